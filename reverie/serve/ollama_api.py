"""The Ollama wire format, so any Ollama client can talk to Reverie: /api/tags, /api/generate, /api/chat.

Two models are offered:
- `reverie`: the whole reasoning way. The prompt (or the last user message) is the question;
  the reply is the answer sentence, then the chain with its provenance.
- `smollm2:135m`: the bundled LLM itself (or whatever `llm_backends` names), for plain generation.

Replies stream as NDJSON by default, as Ollama's do; `"stream": false` gives one JSON object.
"""
from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reverie.errors import NotFoundError, ReverieError
from reverie.schemas import Verdict

REASONING_MODEL = "reverie"
LLM_MODEL = "smollm2:135m"
NDJSON = "application/x-ndjson"


class OllamaOptions(BaseModel):
    """The sampling options Reverie honours; Ollama's other options are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_k: int | None = Field(default=None, ge=1)
    num_predict: int | None = Field(default=None, ge=1, le=1024)
    seed: int | None = None


FORMAT_DOC = ("Ollama's structured output. Reverie honours a JSON schema of one string from a list "
              '({"type": "string", "enum": [...]}): the reply is one of them, JSON-encoded; other formats are ignored.')


IMAGES_DOC = "Base64 images, as Ollama takes them: the `reverie` model links one to the entity it shows; the text-only LLM refuses images."


def one_image(images: list[str] | None, model: str) -> str | None:
    """The question's image; Reverie reasons about one subject, and the bundled LLM sees no images."""
    if not images:
        return None
    if model != REASONING_MODEL:
        raise ReverieError(f"model {model!r} does not support images; ask the {REASONING_MODEL!r} model")
    if len(images) > 1:
        raise ReverieError(f"send one image per question, not {len(images)}")
    return images[0]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # Ollama clients send fields (keep_alive, ...) Reverie has no use for

    model: str = Field(min_length=1)
    prompt: str = ""
    system: str | None = None
    stream: bool = True
    format: str | dict[str, Any] | None = Field(default=None, description=FORMAT_DOC)
    options: OllamaOptions = Field(default_factory=OllamaOptions)
    images: list[str] | None = Field(default=None, description=IMAGES_DOC)

    def generation_options(self) -> dict[str, Any]:
        return {**self.options.model_dump(), "choices": choices_of(self.format)}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = Field(default=None, description=IMAGES_DOC)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = True
    format: str | dict[str, Any] | None = Field(default=None, description=FORMAT_DOC)
    options: OllamaOptions = Field(default_factory=OllamaOptions)

    def generation_options(self) -> dict[str, Any]:
        return {**self.options.model_dump(), "choices": choices_of(self.format)}

    def system_and_prompt(self) -> tuple[str | None, str]:
        """The system messages joined, and the conversation so far ending at the last user turn."""
        system = "\n".join(m.content for m in self.messages if m.role == "system") or None
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise ValueError("the last message must be the user's")
        if len(turns) == 1:
            return system, turns[0].content
        history = "\n".join(f"{m.role.capitalize()}: {m.content}" for m in turns[:-1])
        return system, f"{history}\nUser: {turns[-1].content}"


def choices_of(format: str | dict[str, Any] | None) -> list[str] | None:
    """The strings a `format` schema allows, when it is one string from a list; else None."""
    if not isinstance(format, dict) or format.get("type", "string") != "string":
        return None
    enum = format.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(c, str) and c for c in enum):
        return enum
    return None


def model_name(requested: str) -> str:
    """The model Reverie serves under `requested` ("reverie:latest" is "reverie"), or a 404."""
    name = requested.removesuffix(":latest")
    if name not in (REASONING_MODEL, LLM_MODEL):
        raise NotFoundError(f"model {requested!r} not found; this server has {REASONING_MODEL!r} and {LLM_MODEL!r}")
    return name


def tags() -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat()
    details = {
        REASONING_MODEL: {"format": "reverie", "family": "reverie", "parameter_size": "graph", "quantization_level": "none"},
        LLM_MODEL: {"format": "gguf", "family": "llama", "parameter_size": "135M", "quantization_level": "Q8_0"},
    }
    return {
        "models": [
            {"name": name, "model": name, "modified_at": now, "size": 0, "digest": "", "details": detail}
            for name, detail in details.items()
        ]
    }


def verdict_text(verdict: Verdict) -> str:
    """The `reverie` model's reply: the answer, then the chain with each step's provenance."""
    lines = [verdict.answer, "", f"Chain ({verdict.policy}):"]
    if verdict.image is not None:
        lines.insert(1, f"(The image shows {verdict.image.entity}, similarity {verdict.image.score:.2f}.)")
    for i, step in enumerate(verdict.chain.steps, 1):
        flag = " [imagined]" if step.imagined else ""
        lines.append(f"{i}. {step.what} --[{step.action}]--> {step.result}{flag} (source {step.source})")
    return "\n".join(lines)


def _chunk(kind: Literal["generate", "chat"], model: str, text: str, done: bool) -> dict[str, Any]:
    reply: dict[str, Any] = {"model": model, "created_at": datetime.now(timezone.utc).isoformat(), "done": done}
    if kind == "chat":
        reply["message"] = {"role": "assistant", "content": text}
    else:
        reply["response"] = text
    return reply


def _final(kind: Literal["generate", "chat"], model: str, text: str, pieces: int, started: float) -> dict[str, Any]:
    reply = _chunk(kind, model, text, done=True)
    total_ns = int((time.perf_counter() - started) * 1e9)
    reply.update({"done_reason": "stop", "total_duration": total_ns, "load_duration": 0, "eval_count": pieces, "eval_duration": total_ns})
    return reply


async def ndjson_lines(kind: Literal["generate", "chat"], model: str, pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """A streamed reply: one line per piece, then a final line with done true."""
    started, count = time.perf_counter(), 0
    async for piece in pieces:
        count += 1
        yield (json.dumps(_chunk(kind, model, piece, done=False)) + "\n").encode()
    yield (json.dumps(_final(kind, model, "", count, started)) + "\n").encode()


async def whole_reply(kind: Literal["generate", "chat"], model: str, pieces: AsyncIterator[str]) -> dict[str, Any]:
    started, parts = time.perf_counter(), []
    async for piece in pieces:
        parts.append(piece)
    return _final(kind, model, "".join(parts), len(parts), started)
