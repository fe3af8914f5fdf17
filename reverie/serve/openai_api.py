"""The OpenAI wire format, so the official `openai` client (and chat UIs built on it) can talk to
Reverie: GET /v1/models, POST /v1/chat/completions (streamed or not), POST /v1/embeddings.

The models are the Ollama face's: `reverie` (the reasoning way: the last user message is the
question, the reply the answer then the chain) and `smollm2:135m` (the bundled LLM); embeddings come
from MiniLM, `all-minilm-l6-v2`. Errors are OpenAI's shape: {"error": {"message", "type", "code"}}.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reverie.errors import NotFoundError, ReverieError
from reverie.serve.ollama_api import LLM_MODEL, REASONING_MODEL

EMBEDDING_MODEL = "all-minilm-l6-v2"
PATHS = ("/v1/models", "/v1/chat/completions", "/v1/embeddings")


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""

    def images(self) -> list[str]:
        """Images as data: URLs (base64); a remote URL cannot be fetched here."""
        if not isinstance(self.content, list):
            return []
        urls = [str((p.image_url or {}).get("url", "")) for p in self.content if p.type == "image_url"]
        remote = [u for u in urls if not u.startswith("data:")]
        if remote:
            raise ReverieError("images must be sent inline as data: URLs; this server reaches no network")
        return urls


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1, le=1024)
    seed: int | None = None

    def ollama_messages(self) -> list[dict[str, Any]]:
        """The conversation in the Ollama face's terms (roles system, user, assistant)."""
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text(), "images": m.images() or None} for m in self.messages]

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "num_predict": self.max_tokens, "seed": self.seed}


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not taken).")

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or len(texts) > 2048:
            raise ReverieError("input must hold 1 to 2048 texts")
        return texts


def error_body(message: str, status: int) -> dict[str, Any]:
    kind = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large"}.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": status}}


def models() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "reverie"}
                                       for name in (REASONING_MODEL, LLM_MODEL, EMBEDDING_MODEL)]}


def embedding_reply(vectors, model: str) -> dict[str, Any]:
    return {"object": "list", "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0},
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}


def check_embedding_model(model: str) -> None:
    if model != EMBEDDING_MODEL:
        raise NotFoundError(f"embedding model {model!r} not found; this server embeds with {EMBEDDING_MODEL!r}")


async def whole_reply(model: str, pieces: AsyncIterator[str]) -> dict[str, Any]:
    parts = [piece async for piece in pieces]
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(parts)}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(parts), "total_tokens": len(parts)}}


async def sse_chunks(model: str, pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """A streamed reply: a role delta, a content delta per piece, a stop, then [DONE]."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body)}\n\n".encode()

    yield chunk({"role": "assistant", "content": ""})
    async for piece in pieces:
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    yield b"data: [DONE]\n\n"
