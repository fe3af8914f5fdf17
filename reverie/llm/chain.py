"""A fallback chain of LLM backends: the first one that answers wins."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from reverie.llm.base import BackendUnavailable, Finish, LLMBackend, Sampling

log = logging.getLogger(__name__)

# Failures that mean "try the next backend"; anything else is a bug and propagates.
FALLBACK_ERRORS = (BackendUnavailable, ConnectionError, TimeoutError)


class StreamedAnswer:
    """The pieces of one streamed answer, and the backend that wrote them.

    Iterate it (once) for the text pieces. `backend` is None until the first piece arrives, then
    the name of the backend that answered; `text` is every piece so far, joined; `finish` is the
    backend's Finish once the pieces are done (None from a source that reports none).
    """

    def __init__(self, named_pieces: Iterator[tuple[str, str | Finish]]):
        """`named_pieces` yields (backend name, piece or the closing Finish)."""
        self._named_pieces = named_pieces
        self._started = False
        self._pieces: list[str] = []
        self.backend: str | None = None
        self.finish: Finish | None = None

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def __iter__(self) -> Iterator[str]:
        if self._started:
            raise RuntimeError("a StreamedAnswer can be iterated only once")
        self._started = True
        for backend, piece in self._named_pieces:
            self.backend = backend
            if isinstance(piece, Finish):
                self.finish = piece
            elif piece:  # an empty piece only names the backend of an empty reply
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

    def generate(self, prompt: str, system: str | None, sampling: Sampling) -> tuple[str, str]:
        """(reply, name of the backend that wrote it); the arguments as in LLMBackend."""
        errors: dict[str, str] = {}
        for backend in self.backends:
            try:
                text = backend.generate(prompt, system, sampling)
            except FALLBACK_ERRORS as exc:
                _record(errors, backend.name, exc)
                continue
            self.last_backend = backend.name
            return text, backend.name
        raise _all_failed(errors)

    def generate_many(
        self, requests: Sequence[tuple[str, str | None, int | None]], sampling: Sampling
    ) -> list[tuple[str, str]]:
        """(reply, backend) for each (prompt, system, seed), all from the first backend that answers;
        the arguments as in LLMBackend."""
        errors: dict[str, str] = {}
        for backend in self.backends:
            try:
                replies = backend.generate_many(requests, sampling)
            except FALLBACK_ERRORS as exc:
                _record(errors, backend.name, exc)
                continue
            self.last_backend = backend.name
            return [(reply, backend.name) for reply in replies]
        raise _all_failed(errors)

    def stream(self, prompt: str, system: str | None, sampling: Sampling) -> StreamedAnswer:
        """The reply as a StreamedAnswer; its `backend` is set with the first piece, its `finish`
        after the last. The arguments as in LLMBackend.

        A backend that fails before its first piece hands over to the next. One that fails after
        it has started cannot take back what was sent, so that error propagates.
        """

        def named_pieces() -> Iterator[tuple[str, str | Finish]]:
            errors: dict[str, str] = {}
            for backend in self.backends:
                try:
                    pieces = backend.stream(prompt, system, sampling)
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
