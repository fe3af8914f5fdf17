"""The LLM backends by name, and the fallback chain that `settings.llm_backends` lists.

The one module that imports both the backends and the chain, so that neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reverie.llm.base import LLMBackend
from reverie.llm.chain import FallbackChain
from reverie.llm.local import LocalLLM
from reverie.llm.ollama_backend import OllamaLLM
from reverie.llm.student import StudentLLM

if TYPE_CHECKING:
    from reverie.config import Settings

LLM_BACKENDS: dict[str, type[LLMBackend]] = {backend.name: backend for backend in (LocalLLM, OllamaLLM, StudentLLM)}
"""LLM backend classes by the name `settings.llm_backends` lists them with; each builds with `from_settings`."""


def build_chain(settings: Settings) -> FallbackChain:
    """The backends named in `settings.llm_backends`, in order.

    Building is cheap: the local model loads on its first call (or `load()`), and the Ollama
    client connects per request.
    """
    return FallbackChain([LLM_BACKENDS[name].from_settings(settings) for name in settings.llm_backends])
