"""LLM backends that put an answer into words: the bundled SmolLM2, an Ollama server, the student
distilled from SmolLM2 (reverie train student), and a fallback chain over them. No Ray here; Ray
actors elsewhere host these objects.

Importing this package is cheap: transformers loads with the local model, on its first use.
"""

from reverie.llm.base import BackendUnavailable, Finish, LLMBackend, Sampling, StopStrings, text_of
from reverie.llm.chain import FallbackChain, StreamedAnswer
from reverie.llm.local import LocalLLM, bundled_gguf_path
from reverie.llm.ollama_backend import OllamaLLM
from reverie.llm.registry import LLM_BACKENDS, build_chain
from reverie.llm.student import StudentLLM
from reverie.llm.verbalize import (
    TEMPLATE_BACKEND,
    build_prompt,
    first_sentence,
    grounded_sentence,
    no_fact_sentence,
    step_fact,
    stream_verbalize,
    template_sentence,
    verbalize,
)

__all__ = [
    "LLM_BACKENDS",
    "TEMPLATE_BACKEND",
    "BackendUnavailable",
    "FallbackChain",
    "Finish",
    "LLMBackend",
    "LocalLLM",
    "OllamaLLM",
    "Sampling",
    "StopStrings",
    "StreamedAnswer",
    "StudentLLM",
    "build_chain",
    "build_prompt",
    "bundled_gguf_path",
    "first_sentence",
    "grounded_sentence",
    "step_fact",
    "stream_verbalize",
    "no_fact_sentence",
    "template_sentence",
    "text_of",
    "verbalize",
]
