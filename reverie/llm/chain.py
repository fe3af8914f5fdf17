"""A fallback chain of LLM backends: the first one that answers wins."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from reverie.errors import ReverieError

if TYPE_CHECKING:
    from reverie.config import Settings

log = logging.getLogger(__name__)


class BackendUnavailable(ReverieError):
    """A backend cannot answer: server down, model not installed, every backend failed.

    `errors` maps each failed backend's name to its error, when several were tried.
    """

    status = 503

    def __init__(self, message: str, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})

    def __reduce__(self):  # keeps `errors` across Ray's pickling too
        return (type(self), (self.message, self.errors))


# Failures that mean "try the next backend"; anything else is a bug and propagates.
FALLBACK_ERRORS = (BackendUnavailable, ConnectionError, TimeoutError)


class LLMBackend(Protocol):
    """What every backend in LLM_BACKENDS does; tests/test_llm.py runs one contract against each."""

    name: str

    def load(self) -> "LLMBackend":
        """Be ready to generate now (load weights, reach the server); returns self. Raises
        BackendUnavailable when it cannot."""
        ...

    def generate(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, choices: Sequence[str] | None = None,
    ) -> str:
        """The whole reply. With `choices`, decoding is constrained to them (a menu the model must
        pick from, as Ollama's structured outputs do): the reply is one of them, whole."""
        ...

    def stream(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None,
    ) -> Iterator[str]:
        """The reply in pieces, as they are written; joined, they are what `generate` returns."""
        ...


class StreamedAnswer:
    """The pieces of one streamed answer, and the backend that wrote them.

    Iterate it (once) for the text pieces. `backend` is None until the first piece arrives, then
    the name of the backend that answered; `text` is every piece so far, joined.
    """

    def __init__(self, named_pieces: Iterator[tuple[str, str]]):
        """`named_pieces` yields (backend name, piece)."""
        self._named_pieces = named_pieces
        self._started = False
        self._pieces: list[str] = []
        self.backend: str | None = None

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a StreamedAnswer can be iterated only once")
        self._started = True
        for backend, piece in self._named_pieces:
            self.backend = backend
            if piece:  # an empty piece only names the backend of an empty reply
                self._pieces.append(piece)
                yield piece


class FallbackChain:
    """Backends tried in order; a backend that is unavailable hands over to the next."""

    def __init__(self, backends: list[LLMBackend]):
        if not backends:
            raise ValueError("a FallbackChain needs at least one backend")
        self.backends = list(backends)
        self.last_backend: str | None = None  # which backend answered the latest call

    @property
    def names(self) -> list[str]:
        return [backend.name for backend in self.backends]

    def generate(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, choices: Sequence[str] | None = None,
    ) -> tuple[str, str]:
        """(reply, name of the backend that wrote it); `choices` as in LLMBackend.generate."""
        errors: dict[str, str] = {}
        for backend in self.backends:
            try:
                text = backend.generate(
                    prompt, system=system, temperature=temperature, top_k=top_k,
                    max_new_tokens=max_new_tokens, seed=seed, choices=choices,
                )
            except FALLBACK_ERRORS as exc:
                _record(errors, backend.name, exc)
                continue
            self.last_backend = backend.name
            return text, backend.name
        raise _all_failed(errors)

    def stream(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None,
    ) -> StreamedAnswer:
        """The reply as a StreamedAnswer; its `backend` is set with the first piece.

        A backend that fails before its first piece hands over to the next. One that fails after
        it has started cannot take back what was sent, so that error propagates.
        """
        def named_pieces() -> Iterator[tuple[str, str]]:
            errors: dict[str, str] = {}
            for backend in self.backends:
                try:
                    pieces = backend.stream(
                        prompt, system=system, temperature=temperature, top_k=top_k,
                        max_new_tokens=max_new_tokens, seed=seed,
                    )
                    first = next(pieces, "")
                except FALLBACK_ERRORS as exc:
                    _record(errors, backend.name, exc)
                    continue
                self.last_backend = backend.name
                yield backend.name, first
                yield from ((backend.name, piece) for piece in pieces)
                return
            raise _all_failed(errors)

        return StreamedAnswer(named_pieces())


def _record(errors: dict[str, str], name: str, exc: BaseException) -> None:
    log.warning("LLM backend %r unavailable, trying the next: %s", name, exc)
    key, n = name, 1
    while key in errors:  # two backends of one kind, e.g. two Ollama hosts
        n += 1
        key = f"{name}#{n}"
    errors[key] = str(exc) or type(exc).__name__


def _all_failed(errors: dict[str, str]) -> BackendUnavailable:
    listing = "; ".join(f"{name}: {error}" for name, error in errors.items())
    return BackendUnavailable(f"every LLM backend failed ({listing})", errors)


def _local(settings: Settings) -> LLMBackend:
    from reverie.llm.local import LocalLLM

    return LocalLLM(settings.model_cache_dir)


def _ollama(settings: Settings) -> LLMBackend:
    from reverie.llm.ollama_backend import OllamaLLM

    return OllamaLLM(settings.ollama_host, settings.ollama_model, settings.ollama_timeout_s, settings.ollama_api_key)


LLM_BACKENDS: dict[str, Callable[[Settings], LLMBackend]] = {"local": _local, "ollama": _ollama}
"""LLM backends by the name `settings.llm_backends` lists them with; each builds from the settings."""


def build_chain(settings: Settings) -> FallbackChain:
    """The backends named in `settings.llm_backends`, in order.

    Building is cheap: the local model loads on its first call (or `load()`), and the Ollama
    client connects per request.
    """
    return FallbackChain([LLM_BACKENDS[name](settings) for name in settings.llm_backends])
