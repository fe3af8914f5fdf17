"""The LLM as Reverie hosts it: one fallback chain, loaded once, that says answers and generates.

`Verbalizer` is the one class both hosts run: the CLI's LLM actor (`ray.remote(Verbalizer)`) and
Serve's LLM deployment (`serve.deployment(Verbalizer)`), so the two cannot drift apart.
"""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

from reverie.config import Settings, offline_hub
from reverie.llm.base import BackendUnavailable, Finish, Sampling
from reverie.llm.chain import FallbackChain
from reverie.llm.registry import LLM_BACKENDS, build_chain
from reverie.llm.verbalize import TEMPLATE_BACKEND, grounded_sentence, stream_verbalize, template_sentence, verbalize
from reverie.schemas import Chain

log = logging.getLogger(__name__)
REPLY_CACHE_SIZE = 4096


def give_back_memory() -> None:
    """Return the heap that a generation freed to the system (glibc keeps it otherwise: a replica
    that had written one batch held ~0.5 GB more for as long as it lived)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class Verbalizer:
    def __init__(self, settings: Settings | dict[str, Any], load: bool = False):
        """`load`: load every backend now (Serve: before the replica takes requests) rather than
        on the first answer or `warm_up`."""
        import torch

        offline_hub()
        self.settings = settings if isinstance(settings, Settings) else Settings(**settings)
        torch.set_num_threads(self.settings.model_threads)  # a host that reserves no CPU would get one thread
        self.chain = build_chain(self.settings)
        self.by_name: dict[
            str, FallbackChain
        ] = {}  # one backend asked for by name (a face's model), built when first asked
        self.replies: dict[tuple, tuple[str, str]] = {}  # the model's replies by prompt: verbalize_many's cache
        self._replies_lock = threading.Lock()
        if load:
            self.warm_up()

    def warm_up(self) -> None:
        """Load every backend now (the local model's first load converts the GGUF, ~20 s). One
        that cannot load is left to the fallback chain, which skips it when asked."""
        for backend in self.chain.backends:
            try:
                backend.load()
            except BackendUnavailable as exc:
                log.warning("LLM backend %r is unavailable: %s", backend.name, exc)

    def verbalize_many(self, answers: list[tuple[str, Chain, int | None]]) -> list[tuple[str, str]]:
        """(sentence, backend) for each (question, chain, seed), generated as one batch; a reply the
        model already wrote for the same prompt (and seed, when sampling) comes from the cache."""
        with self._replies_lock:  # Serve calls from several threads; generation is one at a time anyway
            said = verbalize(answers, self.chain, self.settings, replies=self.replies)
            while len(self.replies) > REPLY_CACHE_SIZE:  # oldest first
                self.replies.pop(next(iter(self.replies)))
            give_back_memory()
        return said

    def stream_answer(self, question: str, chain: Chain, seed: int | None = None) -> Iterator[dict[str, str]]:
        """{"token": piece} as the model writes, then {"answer", "backend"}: the checked sentence,
        or the chain's template sentence when the model's is not grounded in the chain."""
        streamed = stream_verbalize(question, chain, self.chain, self.settings, seed=seed)
        for piece in streamed:
            yield {"token": piece}
        assert streamed.backend is not None  # stream_verbalize always yields a first, named piece
        if streamed.backend == TEMPLATE_BACKEND:
            yield {"answer": streamed.text, "backend": TEMPLATE_BACKEND}
            return
        sentence = grounded_sentence(streamed.text, question, chain)
        if sentence is None:
            yield {"answer": template_sentence(question, chain), "backend": TEMPLATE_BACKEND}
        else:
            yield {"answer": sentence, "backend": streamed.backend}

    def backend_chain(self, backend: str | None) -> FallbackChain:
        """The settings' fallback chain (None), or the one backend named: the chain's own when it
        is in the chain, else built from the settings on first use (it loads on its first call)."""
        if backend is None:
            return self.chain
        if backend not in self.by_name:
            if backend not in LLM_BACKENDS:
                raise ValueError(f"unknown LLM backend {backend!r}; known: {', '.join(sorted(LLM_BACKENDS))}")
            found = next((b for b in self.chain.backends if b.name == backend), None)
            self.by_name[backend] = FallbackChain([found or LLM_BACKENDS[backend].from_settings(self.settings)])
        return self.by_name[backend]

    def generate(
        self, prompt: str, system: str | None, options: dict[str, Any], backend: str | None = None
    ) -> Iterator[str | Finish]:
        """Plain generation (the Ollama and OpenAI endpoints): the reply's pieces, then one Finish
        (token counts, "stop" or "length", durations). `options` are Ollama's (temperature, top_k,
        top_p, num_predict, seed, stop), unset ones take the settings', plus the structured output
        the request asked for: `json_object` (one JSON object) or `choices` (a menu: the reply is
        one of them, JSON-encoded as Ollama sends structured output, in one piece). `backend`
        names one backend (the model a face serves under its own name); None is the fallback chain."""
        sampling = Sampling.from_options(options, self.settings)
        streamed = self.backend_chain(backend).stream(prompt, system, sampling)
        if sampling.choices:
            yield json.dumps("".join(streamed))
        else:
            yield from streamed
        assert streamed.finish is not None  # every backend's stream ends with a Finish (LLMBackend.stream)
        yield streamed.finish
