"""What every HTTP request passes before a route sees it: CORS, the API key, the body-size limit,
and request metrics. A plain ASGI middleware, so it also covers streamed replies and the docs pages.

Errors take the shape of the face a path belongs to (`error_content`): OpenAI's
{"error": {"message", "type", "code"}} on the OpenAI paths, Ollama's {"error": message} on / and
/api/*, and Reverie's {"detail": message} everywhere else.
"""
from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from reverie.serve import openai_api

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def face(path: str) -> Literal["openai", "ollama", "reverie"]:
    """Which API a path belongs to, for the shape of its errors."""
    if openai_api.is_openai_path(path):
        return "openai"
    if path == "/" or path.startswith("/api/"):
        return "ollama"
    return "reverie"


def error_content(path: str, status: int, message: str) -> dict[str, Any]:
    """An error body in the shape the path's clients read."""
    kind = face(path)
    if kind == "openai":
        return openai_api.error_body(status, message)
    if kind == "ollama":
        return {"error": message}
    return {"detail": message}


def is_public(method: str, path: str, accept: str) -> bool:
    """What anyone may read without the key: the web page's static files (they hold no data; the
    page asks for the key and sends it with its API calls), and a browser's visit to / that goes on to it."""
    if method not in ("GET", "HEAD"):
        return False
    return path == "/ui" or path.startswith("/ui/") or wants_page(method, path, accept)


def wants_page(method: str, path: str, accept: str) -> bool:
    """A browser opening the server's root (it accepts HTML; Ollama's probe does not)."""
    return method in ("GET", "HEAD") and path == "/" and "text/html" in accept


def cors_options(allow_origins: list[str], allow_origin_regex: str | None) -> dict[str, Any]:
    """Starlette CORSMiddleware's arguments. It sits outside the Guard: a browser's preflight
    (OPTIONS) carries no Authorization header, so it is answered before the key is asked for;
    the request that follows must carry the key. No cookies are used, so no credentials."""
    return {"allow_origins": allow_origins, "allow_origin_regex": allow_origin_regex, "allow_methods": ["GET", "HEAD", "POST"],
            "allow_headers": ["*"], "max_age": 600}


async def send_json(send: Send, path: str, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error_content(path, status, message)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def bearer_ok(headers: list[tuple[bytes, bytes]], api_key: str) -> bool:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())
    return False


class RequestRecorder:
    """Counts requests by route and status and times them, as Ray metrics (exported as ray_reverie_*)."""

    def __init__(self):
        from ray.util.metrics import Counter, Histogram

        self.requests = Counter("reverie_http_requests_total", description="HTTP requests by route and status.", tag_keys=("route", "status"))
        self.seconds = Histogram(
            "reverie_http_request_seconds",
            description="Seconds from request to the end of the reply, by route.",
            boundaries=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
            tag_keys=("route",),
        )

    def record(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status)})
        self.seconds.observe(seconds, tags={"route": route})


class Guard:
    """ASGI middleware: 401 without the API key (when one is set), 413 over the body limit."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, recorder: RequestRecorder | None = None):
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, send_recorded)
        finally:
            if self.recorder is not None:
                route = scope.get("route")
                self.recorder.record(getattr(route, "path", "unmatched"), status["code"], time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        headers = scope.get("headers", [])
        accept = next((v.decode("latin-1") for k, v in headers if k.lower() == b"accept"), "")
        if self.api_key and not is_public(scope.get("method", ""), path, accept) and not bearer_ok(headers, self.api_key):
            await send_json(send, path, 401, "missing or wrong API key: send `Authorization: Bearer <key>`", [(b"www-authenticate", b"Bearer")])
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_json(send, path, 413, f"the request body is {int(declared)} bytes; the limit is {self.max_body_bytes}")
            return
        # Without a declared length (chunked uploads) the body is read here, up to the limit.
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json(send, path, 413, f"the request body passes the limit of {self.max_body_bytes} bytes")
                return
            body.append(chunk)
            more = message.get("more_body", False)
        whole = b"".join(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # after the body: wait for the client to disconnect

        await self.app(scope, replay, send)
