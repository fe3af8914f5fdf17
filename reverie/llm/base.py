"""What every LLM backend and the fallback chain over them share: the backend contract, how a
reply is sampled, how it finished, and the error that hands over to the next backend.

Imports no backend and not the chain, which both import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from reverie.errors import ReverieError

if TYPE_CHECKING:
    from reverie.config import Settings


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


@dataclass(frozen=True)
class Sampling:
    """How a reply is decoded: the same for every backend, and for a whole `generate_many` batch."""

    temperature: float
    """0 decodes greedily; above 0, the softmax temperature of sampling."""
    top_k: int
    """Sampling draws from the `top_k` likeliest tokens only (not used when greedy)."""
    max_new_tokens: int
    """The most tokens the reply may have; a reply cut there finishes with reason "length"."""
    seed: int | None = None
    """Seeds sampling, so that the same seed gives the same reply; None draws afresh."""
    top_p: float = 1.0
    """Nucleus sampling: draws from the likeliest tokens that together hold `top_p` of the mass."""
    stop: Sequence[str] = ()
    """The reply ends before the first of these strings (not included)."""
    choices: Sequence[str] | None = None
    """A menu: decoding is held to these strings, so the reply is one of them, whole (as Ollama's
    structured outputs do). None (or empty) leaves the reply free."""
    json_object: bool = False
    """Holds the reply to one well-formed JSON object (Ollama's `format: "json"`)."""

    def __post_init__(self):
        # Tuples: a frozen Sampling is then immutable all through, and a plain string (whose
        # characters would each become a stop string) is caught.
        for name in ("stop", "choices"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} is a list of strings, not one string: {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.temperature < 0:
            raise ValueError(f"temperature must be at least 0, not {self.temperature}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.choices and not all(self.choices):
            raise ValueError("a choice must not be empty")

    @classmethod
    def from_settings(cls, settings: Settings, **changes: Any) -> Sampling:
        """The settings' sampling (temperature, top_k, max_new_tokens), with `changes` made."""
        return cls(
            temperature=settings.temperature, top_k=settings.top_k, max_new_tokens=settings.max_new_tokens, **changes
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], settings: Settings) -> Sampling:
        """The sampling that Ollama's `options` ask for (temperature, top_k, top_p, num_predict,
        seed, stop), plus the structured output `choices` or `json_object`. Unset options (None;
        top_k and num_predict 0 too) take the settings' temperature, top_k and max_new_tokens."""
        return cls(
            temperature=settings.temperature if options.get("temperature") is None else options["temperature"],
            top_k=options.get("top_k") or settings.top_k,
            max_new_tokens=options.get("num_predict") or settings.max_new_tokens,
            seed=options.get("seed"),
            top_p=1.0 if options.get("top_p") is None else options["top_p"],
            stop=options.get("stop") or (),
            choices=options.get("choices"),
            json_object=bool(options.get("json_object")),
        )


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

    `system` is the system message, None for none; `sampling` says how the reply is decoded.
    """

    name: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LLMBackend:
        """The backend as the settings configure it; cheap: nothing loads or connects yet."""
        ...

    def load(self) -> LLMBackend:
        """Be ready to generate now (load weights, reach the server); returns self. Raises
        BackendUnavailable when it cannot."""
        ...

    def generate(self, prompt: str, system: str | None, sampling: Sampling) -> str:
        """The whole reply: the text pieces of `stream`, joined."""
        ...

    def stream(self, prompt: str, system: str | None, sampling: Sampling) -> Iterator[str | Finish]:
        """The reply in text pieces, as they are written, then one Finish."""
        ...

    def generate_many(self, requests: Sequence[tuple[str, str | None, int | None]], sampling: Sampling) -> list[str]:
        """The replies to several (prompt, system, seed), each as `generate` writes it with
        `sampling` and that seed (the request's seed replaces `sampling.seed`); a backend that
        can (the local model) generates them as one batch."""
        ...


def text_of(items: Iterator[str | Finish]) -> str:
    """A stream's text pieces, joined (its Finish left out)."""
    return "".join(item for item in items if isinstance(item, str))


class _Streams(Protocol):
    """What GeneratesByStreaming needs of the class it is mixed into."""

    def stream(self, prompt: str, system: str | None, sampling: Sampling) -> Iterator[str | Finish]: ...


class GeneratesByStreaming:
    """A backend's `generate`: the text of its `stream`, joined, so that the two cannot differ."""

    def generate(self: _Streams, prompt: str, system: str | None, sampling: Sampling) -> str:
        return text_of(self.stream(prompt, system, sampling))


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
        held = max(
            (n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1) if text.endswith(s[:n])), default=0
        )
        self.tail = text[len(text) - held :] if held else ""
        return text[: len(text) - held]

    def flush(self) -> str:
        """What was held back, at the end of the text (it began no stop string after all)."""
        tail, self.tail = self.tail, ""
        return tail
