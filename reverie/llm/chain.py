"""A fallback chain of LLM backends: the first one that answers wins."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

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


@dataclass(frozen=True)
class Finish:
    """What a generation reports after its last text piece: its token counts, why it ended
    ("length": cut at max_new_tokens; "stop": the model ended, or a stop string or a choice did),
    and where its time went, in nanoseconds as Ollama reports them."""

    prompt_tokens: int
    completion_tokens: int
    reason: Literal["stop", "length"]
    load_ns: int = 0
    prompt_ns: int = 0
    completion_ns: int = 0


class LLMBackend(Protocol):
    """What every backend in LLM_BACKENDS does; tests/test_llm.py runs one contract against each.

    The sampling arguments: temperature 0 is greedy; `top_k` and `top_p` (nucleus) narrow
    sampling above 0; `stop` strings end the reply before the first of them (not included);
    `choices` constrains decoding to a menu (the reply is one of them, whole, as Ollama's
    structured outputs do); `json_object` holds the reply to one well-formed JSON object
    (Ollama's `format: "json"`).
    """

    name: str

    def load(self) -> "LLMBackend":
        """Be ready to generate now (load weights, reach the server); returns self. Raises
        BackendUnavailable when it cannot."""
        ...

    def generate(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, top_p: float = 1.0, stop: Sequence[str] = (),
        choices: Sequence[str] | None = None, json_object: bool = False,
    ) -> str:
        """The whole reply: the text pieces of `stream`, joined."""
        ...

    def stream(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, top_p: float = 1.0, stop: Sequence[str] = (),
        choices: Sequence[str] | None = None, json_object: bool = False,
    ) -> Iterator[str | Finish]:
        """The reply in text pieces, as they are written, then one Finish."""
        ...

    def generate_many(
        self, requests: Sequence[tuple[str, str | None, int | None]], *, temperature: float, top_k: int, max_new_tokens: int,
        stop: Sequence[str] = (),
    ) -> list[str]:
        """The replies to several (prompt, system, seed), each as `generate` writes it; a backend
        that can (the local model) generates them as one batch."""
        ...


def text_of(items: Iterator[str | Finish]) -> str:
    """A stream's text pieces, joined (its Finish left out)."""
    return "".join(item for item in items if isinstance(item, str))


class GeneratesByStreaming:
    """A backend's `generate`: the text of its `stream`, joined, so that the two cannot differ."""

    def generate(self, prompt: str, **sampling) -> str:
        return text_of(self.stream(prompt, **sampling))


class StopStrings:
    """Cuts streamed text before the first stop string. A piece's end that could begin a stop
    string is held back until the next piece shows whether it does."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.tail = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be sent now; nothing once a stop string was met."""
        if self.stopped:
            return ""
        text = self.tail + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.tail = True, ""
            return text[: min(hits)]
        held = max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:n])), default=0)
        self.tail = text[len(text) - held:] if held else ""
        return text[: len(text) - held]

    def flush(self) -> str:
        """What was held back, at the end of the text (it began no stop string after all)."""
        tail, self.tail = self.tail, ""
        return tail


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

    def generate(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, top_p: float = 1.0, stop: Sequence[str] = (),
        choices: Sequence[str] | None = None, json_object: bool = False,
    ) -> tuple[str, str]:
        """(reply, name of the backend that wrote it); the arguments as in LLMBackend."""
        errors: dict[str, str] = {}
        for backend in self.backends:
            try:
                text = backend.generate(
                    prompt, system=system, temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens,
                    seed=seed, top_p=top_p, stop=stop, choices=choices, json_object=json_object,
                )
            except FALLBACK_ERRORS as exc:
                _record(errors, backend.name, exc)
                continue
            self.last_backend = backend.name
            return text, backend.name
        raise _all_failed(errors)

    def generate_many(
        self, requests: Sequence[tuple[str, str | None, int | None]], *, temperature: float, top_k: int, max_new_tokens: int,
        stop: Sequence[str] = (),
    ) -> list[tuple[str, str]]:
        """(reply, backend) for each (prompt, system, seed), all from the first backend that answers."""
        errors: dict[str, str] = {}
        for backend in self.backends:
            try:
                replies = backend.generate_many(requests, temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens, stop=stop)
            except FALLBACK_ERRORS as exc:
                _record(errors, backend.name, exc)
                continue
            self.last_backend = backend.name
            return [(reply, backend.name) for reply in replies]
        raise _all_failed(errors)

    def stream(
        self, prompt: str, *, system: str | None = None, temperature: float, top_k: int,
        max_new_tokens: int, seed: int | None = None, top_p: float = 1.0, stop: Sequence[str] = (),
        choices: Sequence[str] | None = None, json_object: bool = False,
    ) -> StreamedAnswer:
        """The reply as a StreamedAnswer; its `backend` is set with the first piece, its `finish`
        after the last. The arguments as in LLMBackend.

        A backend that fails before its first piece hands over to the next. One that fails after
        it has started cannot take back what was sent, so that error propagates.
        """
        def named_pieces() -> Iterator[tuple[str, str]]:
            errors: dict[str, str] = {}
            for backend in self.backends:
                try:
                    pieces = backend.stream(
                        prompt, system=system, temperature=temperature, top_k=top_k, max_new_tokens=max_new_tokens,
                        seed=seed, top_p=top_p, stop=stop, choices=choices, json_object=json_object,
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
