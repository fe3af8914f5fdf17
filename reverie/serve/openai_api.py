"""The OpenAI wire format, so the official `openai` client (and chat UIs built on it) can talk to
Reverie: GET /v1/models and /v1/models/{id}, POST /v1/chat/completions and the legacy
/v1/completions (each streamed or not), POST /v1/embeddings.

The models are the Ollama face's: `reverie` (the reasoning way: the last user message, or the
prompt, is the question; the reply the answer then the chain), `smollm2:135m` (the bundled LLM),
and `all-minilm-l6-v2` (MiniLM embeddings). A request is carried out by the Ollama face's code, so
the two faces cannot drift. Every field is honoured, accepted as having no effect (said so where
it is declared), or refused with 400; a field OpenAI does not define is a 422. Errors are OpenAI's
shape: {"error": {"message", "type", "code"}}, in a stream too.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reverie.encoders.text import text_dim
from reverie.errors import ReverieError
from reverie.llm.base import Finish
from reverie.serve.ollama_api import EMBEDDING_MODEL, SEED_MAX, failure, model_name, served_models, words

STOP_DOC = "Up to 4 strings; the reply ends before the first of them."
MAX_TOKENS_DOC = "Tokens to generate at most (the `reverie` model: words); unset, the server's `max_new_tokens`."
TEMPERATURE_DOC = (
    "Sampling temperature (`smollm2:135m`); the `reverie` model's sentence is decoded as the server's settings say."
)
SEED_DOC = "Seeds the sampling, and for `reverie` the dream rollouts."
USER_DOC = "An end-user id: with the `reverie` model it keeps one user's conversations apart from another's."


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: dict[str, Any] | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[ContentPart] | None = ""
    name: str | None = Field(default=None, description="A participant's name: accepted, not read.")
    tool_calls: list[dict[str, Any]] | None = Field(default=None, description="Refused: tools are not supported.")
    tool_call_id: str | None = Field(default=None, description="Refused: tools are not supported.")
    function_call: dict[str, Any] | None = Field(default=None, description="Refused: tools are not supported.")

    def uses_tools(self) -> bool:
        return self.role in ("tool", "function") or bool(self.tool_calls or self.tool_call_id or self.function_call)

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


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = Field(default=False, description="Send a last chunk with the usage and no choices.")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = Field(
        default=None, description='{"name", "schema", "strict"}: held like Ollama\'s `format` schema.'
    )


class Sampling(BaseModel):
    """The fields chat and legacy completions share."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description=TEMPERATURE_DOC)
    top_p: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Nucleus sampling (`smollm2:135m`), as temperature."
    )
    max_tokens: int | None = Field(default=None, ge=1, le=1024, description=MAX_TOKENS_DOC)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX, description=SEED_DOC)
    stop: str | list[str] | None = Field(default=None, description=STOP_DOC)
    n: int | None = Field(default=None, description="Only 1: one choice per request.")
    presence_penalty: float | None = Field(default=None, description="Only 0: Reverie does not implement it.")
    frequency_penalty: float | None = Field(default=None, description="Only 0: Reverie does not implement it.")
    logit_bias: dict[str, float] | None = Field(default=None, description="Refused unless empty.")
    user: str | None = Field(default=None, description=USER_DOC)

    def refuse_unsupported(self, more: dict[str, bool] | None = None) -> None:
        refused = {
            "n": self.n not in (None, 1),
            "presence_penalty": self.presence_penalty not in (None, 0),
            "frequency_penalty": self.frequency_penalty not in (None, 0),
            "logit_bias": bool(self.logit_bias),
            **(more or {}),
        }
        names = [name for name, bad in refused.items() if bad]
        if names:
            raise ReverieError(f"not supported: {', '.join(names)}")

    def stops(self) -> list[str] | None:
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if stops and len(stops) > 4:
            raise ReverieError("stop: up to 4 strings")
        return stops or None

    def token_budget(self) -> int | None:
        return self.max_tokens

    def options(self) -> dict[str, Any]:
        """The Ollama face's options."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "num_predict": self.token_budget(),
            "seed": self.seed,
            "stop": self.stops(),
        }

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(
        default=None, ge=1, le=1024, description="The newer name of max_tokens; it wins."
    )
    response_format: ResponseFormat | None = Field(
        default=None,
        description='json_object holds the reply to one JSON object; a json_schema of one string from a list ({"type": "string", "enum": [...]}) to one of them; other schemas are refused (`smollm2:135m` only).',
    )
    tools: list[dict[str, Any]] | None = Field(default=None, description="Refused: tools are not supported.")
    tool_choice: str | dict[str, Any] | None = Field(default=None, description='Only "none": tools are not supported.')
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted with no effect: no tools are called.")
    functions: list[dict[str, Any]] | None = Field(default=None, description="Refused: tools are not supported.")
    function_call: str | dict[str, Any] | None = Field(
        default=None, description='Only "none": tools are not supported.'
    )
    logprobs: bool | None = Field(default=None, description="Only false: log-probabilities are not reported.")
    top_logprobs: int | None = Field(default=None, description="Refused: log-probabilities are not reported.")

    def refuse_unsupported(self, more: dict[str, bool] | None = None) -> None:
        uses_tools = (
            bool(self.tools or self.functions)
            or self.tool_choice not in (None, "none")
            or self.function_call not in (None, "none")
            or any(m.uses_tools() for m in self.messages)
        )
        if uses_tools:
            raise ReverieError("tools are not supported")
        super().refuse_unsupported({"logprobs": bool(self.logprobs), "top_logprobs": self.top_logprobs is not None})

    def ollama_messages(self) -> list[dict[str, Any]]:
        """The conversation in the Ollama face's terms (roles system, user, assistant)."""
        role = {"developer": "system"}
        return [
            {"role": role.get(m.role, m.role), "content": m.text(), "images": m.images() or None} for m in self.messages
        ]

    def ollama_format(self) -> str | dict[str, Any] | None:
        """`response_format` as Ollama's `format`."""
        if self.response_format is None or self.response_format.type == "text":
            return None
        if self.response_format.type == "json_object":
            return "json"
        schema = (self.response_format.json_schema or {}).get("schema")
        if not isinstance(schema, dict):
            raise ReverieError("response_format: a json_schema needs its `schema`")
        return schema

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(Sampling):
    """The legacy completions: one prompt, its continuation (the `reverie` model: its answer)."""

    prompt: str | list[str] = Field(description="A prompt, or a list of one (token arrays are not taken).")
    echo: bool | None = Field(default=None, description="Only false: the prompt is not repeated in the reply.")
    suffix: str | None = Field(default=None, description="Refused: no model here fills in the middle.")
    logprobs: int | None = Field(default=None, description="Refused: log-probabilities are not reported.")
    best_of: int | None = Field(default=None, description="Only 1.")

    def refuse_unsupported(self, more: dict[str, bool] | None = None) -> None:
        super().refuse_unsupported(
            {
                "echo": bool(self.echo),
                "suffix": bool(self.suffix),
                "logprobs": self.logprobs is not None,
                "best_of": self.best_of not in (None, 1),
            }
        )

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise ReverieError("prompt: send one prompt per request")
        return self.prompt[0]


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(description="A text or a list of texts (token arrays are not taken).")
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None,
        description="float (the default), or base64 of little-endian float32 (what the openai client asks for).",
    )
    dimensions: int | None = Field(default=None, description="Only MiniLM's width (384): its vectors are that wide.")
    user: str | None = Field(default=None, description="Accepted with no effect.")

    def refuse_unsupported(self) -> None:
        if self.dimensions not in (None, text_dim()):
            raise ReverieError(f"dimensions: {EMBEDDING_MODEL} gives {text_dim()}-d vectors only")


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "request_too_large"}.get(
        status, "invalid_request_error"
    )
    if status >= 500:
        kind = "server_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "reverie"}


def models(settings) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(name) for name in served_models(settings)]}


def model(requested: str) -> dict[str, Any]:
    return _model_card(model_name(requested))


def embedding_reply(vectors, request: EmbeddingRequest, texts: list[str]) -> dict[str, Any]:
    """`usage` counts the texts' words: an approximation of MiniLM's tokens."""
    count = sum(words(t) for t in texts)

    def encoded(vector) -> list[float] | str:
        if request.encoding_format == "base64":
            return base64.b64encode(vector.astype("<f4").tobytes()).decode()
        return vector.tolist()

    return {
        "object": "list",
        "model": request.model,
        "usage": {"prompt_tokens": count, "total_tokens": count},
        "data": [{"object": "embedding", "index": i, "embedding": encoded(v)} for i, v in enumerate(vectors)],
    }


def _usage(finish: Finish) -> dict[str, int]:
    return {
        "prompt_tokens": finish.prompt_tokens,
        "completion_tokens": finish.completion_tokens,
        "total_tokens": finish.prompt_tokens + finish.completion_tokens,
    }


class Reply:
    """One reply's envelope: a chat completion ("chat") or a legacy text completion ("text")."""

    def __init__(self, kind: Literal["chat", "text"], model: str):
        self.kind, self.model = kind, model
        self.id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _envelope(self, streamed: bool) -> dict[str, Any]:
        kind = {"chat": "chat.completion", "text": "text_completion"}[self.kind] + (
            ".chunk" if streamed and self.kind == "chat" else ""
        )
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, text: str, finish: Finish) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish.reason}
        if self.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        return {**self._envelope(False), "choices": [choice], "usage": _usage(finish)}

    def chunk(self, text: str | None, finish: str | None = None, role: bool = False) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if self.kind == "chat":
            choice["delta"] = ({"role": "assistant"} if role else {}) | ({"content": text} if text is not None else {})
        else:
            choice.update(text=text or "", logprobs=None)
        return _event({**self._envelope(True), "choices": [choice]})

    def usage_chunk(self, finish: Finish) -> bytes:
        return _event({**self._envelope(True), "choices": [], "usage": _usage(finish)})


def _event(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body)}\n\n".encode()


async def whole_reply(kind: Literal["chat", "text"], model: str, items: AsyncIterator[str | Finish]) -> dict[str, Any]:
    parts: list[str] = []
    async for item in items:
        if isinstance(item, Finish):
            return Reply(kind, model).whole("".join(parts), item)
        parts.append(item)
    raise RuntimeError("a reply ended without its Finish")


async def sse_chunks(
    kind: Literal["chat", "text"], model: str, items: AsyncIterator[str | Finish], include_usage: bool
) -> AsyncIterator[bytes]:
    """A streamed reply: (chat: a role delta first) a chunk per piece, a chunk with the
    finish_reason, the usage chunk when asked for, then [DONE]. A failure once the reply is
    open is an event {"error": {...}}, which the openai client raises as an APIError."""
    reply = Reply(kind, model)
    try:
        if kind == "chat":
            yield reply.chunk("", role=True)
        async for item in items:
            if isinstance(item, Finish):
                yield reply.chunk(None if kind == "chat" else "", finish=item.reason)
                if include_usage:
                    yield reply.usage_chunk(item)
            else:
                yield reply.chunk(item)
        yield b"data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the status is sent; the client reads the error event
        yield _event(error_body(*failure(exc)))
