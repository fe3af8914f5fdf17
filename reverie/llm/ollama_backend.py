"""An Ollama server as an LLM backend, through the official `ollama` client."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx
import ollama

from reverie.llm.base import BackendUnavailable, Finish, GeneratesByStreaming, Sampling

if TYPE_CHECKING:
    from reverie.config import Settings

# What a server that is down, slow, or lacking the model raises. The client turns a refused
# connection into ConnectionError only outside streaming; timeouts and streamed connects surface
# as httpx errors; a missing model is a ResponseError (404).
_UNAVAILABLE = (ConnectionError, httpx.TransportError, ollama.ResponseError)


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """Ollama's `format` for a reply that is one of `choices`: a JSON schema of one string."""
    return {"type": "string", "enum": list(dict.fromkeys(choices))}


class OllamaLLM(GeneratesByStreaming):
    name = "ollama"

    def __init__(self, host: str, model: str, timeout_s: float, api_key: str | None = None):
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        # A bearer key for servers behind one (Reverie's own Ollama face with REVERIE_API_KEY set).
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.Client(host=host, timeout=timeout_s, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings) -> OllamaLLM:
        return cls(settings.ollama_host, settings.ollama_model, settings.ollama_timeout_s, settings.ollama_api_key)

    def load(self) -> "OllamaLLM":
        """Check that the server answers and lists the model; BackendUnavailable if not."""
        try:
            listed = {m.model for m in self._client.list().models if m.model is not None}
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        if self.model not in listed and f"{self.model}:latest" not in listed:
            raise BackendUnavailable(
                f"Ollama at {self.host} has no model {self.model!r} (it has: {', '.join(sorted(listed)) or 'none'})"
            )
        return self

    def _request(self, prompt: str, system: str | None, sampling: Sampling) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        options: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_k": sampling.top_k,
            "top_p": sampling.top_p,
            "num_predict": sampling.max_new_tokens,
        }
        if sampling.seed is not None:
            options["seed"] = sampling.seed
        if sampling.stop:
            options["stop"] = list(sampling.stop)
        request: dict[str, Any] = {"model": self.model, "messages": messages, "options": options}
        if sampling.choices:
            request["format"] = choice_schema(sampling.choices)
        elif sampling.json_object:
            request["format"] = "json"
        return request

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        detail = str(exc) or type(exc).__name__
        return BackendUnavailable(f"Ollama at {self.host} (model {self.model!r}) is unavailable: {detail}")

    def generate_many(self, requests: Sequence[tuple[str, str | None, int | None]], sampling: Sampling) -> list[str]:
        """One request per reply: the Ollama server batches concurrent requests itself (OLLAMA_NUM_PARALLEL)."""
        return [self.generate(prompt, system, replace(sampling, seed=seed)) for prompt, system, seed in requests]

    def stream(self, prompt: str, system: str | None, sampling: Sampling) -> Iterator[str | Finish]:
        """Pieces of the reply, then a Finish with the server's own counts and durations; nothing
        is sent until the first piece is asked for. Ollama's options and `format` carry the
        sampling. With `choices`, the server's JSON string is decoded and sent whole (a reply that
        is not one, from a server that ignores `format`, comes as it is)."""
        request = self._request(prompt, system, sampling)
        held: list[str] = []  # a choice's JSON text, decoded once whole
        try:
            for part in self._client.chat(**request, stream=True):
                if part.message.content:
                    if sampling.choices:
                        held.append(part.message.content)
                    else:
                        yield part.message.content
                if part.done:
                    if held:
                        yield _decoded_choice("".join(held))
                    yield Finish(
                        prompt_tokens=part.prompt_eval_count or 0,
                        completion_tokens=part.eval_count or 0,
                        reason="length" if part.done_reason == "length" else "stop",
                        load_ns=part.load_duration or 0,
                        prompt_ns=part.prompt_eval_duration or 0,
                        completion_ns=part.eval_duration or 0,
                    )
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc


def _decoded_choice(content: str) -> str:
    try:
        decoded = json.loads(content)
    except ValueError:
        return content
    return decoded if isinstance(decoded, str) else content
