"""An Ollama server as an LLM backend, through the official `ollama` client."""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import ollama

from reverie.llm.chain import BackendUnavailable

# What a server that is down, slow, or lacking the model raises. The client turns a refused
# connection into ConnectionError only outside streaming; timeouts and streamed connects surface
# as httpx errors; a missing model is a ResponseError (404).
_UNAVAILABLE = (ConnectionError, httpx.TransportError, ollama.ResponseError)


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """Ollama's `format` for a reply that is one of `choices`: a JSON schema of one string."""
    return {"type": "string", "enum": list(dict.fromkeys(choices))}


class OllamaLLM:
    name = "ollama"

    def __init__(self, host: str, model: str, timeout_s: float, api_key: str | None = None):
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        # A bearer key for servers behind one (Reverie's own Ollama face with REVERIE_API_KEY set).
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.Client(host=host, timeout=timeout_s, headers=headers)

    def load(self) -> "OllamaLLM":
        """Check that the server answers and lists the model; BackendUnavailable if not."""
        try:
            listed = {m.model for m in self._client.list().models}
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        if self.model not in listed and f"{self.model}:latest" not in listed:
            raise BackendUnavailable(f"Ollama at {self.host} has no model {self.model!r} (it has: {', '.join(sorted(listed)) or 'none'})")
        return self

    def _request(self, prompt: str, system: str | None, temperature: float, top_k: int,
                 max_new_tokens: int, seed: int | None) -> dict[str, Any]:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        options: dict[str, Any] = {"temperature": temperature, "top_k": top_k, "num_predict": max_new_tokens}
        if seed is not None:
            options["seed"] = seed
        return {"model": self.model, "messages": messages, "options": options}

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        detail = str(exc) or type(exc).__name__
        return BackendUnavailable(f"Ollama at {self.host} (model {self.model!r}) is unavailable: {detail}")

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float,
        top_k: int,
        max_new_tokens: int,
        seed: int | None = None,
        choices: Sequence[str] | None = None,
    ) -> str:
        """The whole reply. With `choices`, Ollama's structured output (a JSON schema of one string
        from `choices`) constrains it; the server's JSON string is decoded, and a reply that is not
        one (a server that ignores `format`) comes back as it is."""
        request = self._request(prompt, system, temperature, top_k, max_new_tokens, seed)
        if choices:
            request["format"] = choice_schema(choices)
        try:
            response = self._client.chat(**request, stream=False)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        content = response.message.content or ""
        if choices:
            try:
                decoded = json.loads(content)
            except ValueError:
                return content
            return decoded if isinstance(decoded, str) else content
        return content

    def stream(
        self,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float,
        top_k: int,
        max_new_tokens: int,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Pieces of the reply; nothing is sent until the first piece is asked for."""
        request = self._request(prompt, system, temperature, top_k, max_new_tokens, seed)
        try:
            for part in self._client.chat(**request, stream=True):
                if part.message.content:
                    yield part.message.content
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
