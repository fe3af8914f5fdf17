"""What every HTTP request passes before a route sees it, outermost first: request metrics; the
site checks, Host (against DNS rebinding) and Origin (against cross-site requests); CORS; the API
key; the body-size limit. A plain ASGI middleware, so it also covers streamed replies and the docs
pages. docs/security.md says what each check protects and how to change it.

Its errors take the shape of the face the path belongs to (reverie/serve/faces: OpenAI's
{"error": {"message", "type", "code"}} on the OpenAI routes, Ollama's {"error": message} on / and
/api/*, Reverie's {"detail": message} everywhere else).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware.cors import CORSMiddleware

from reverie.errors import ReverieError
from reverie.serve.faces import error_content
from reverie.serve.faces.face import excerpt
from reverie.serve.faces.ollama import wants_page

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def is_public(method: str, path: str, accept: str) -> bool:
    """What anyone may read without the key: the web page's static files (they hold no data; the
    page asks for the key and sends it with its API calls), and a browser's visit to / that goes on to it."""
    if method not in ("GET", "HEAD"):
        return False
    return path == "/ui" or path.startswith("/ui/") or wants_page(method, path, accept)


# A Host header: a name or an IPv4 literal, or an IPv6 literal in brackets; then an optional port.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lower case, an IPv6 address without brackets, no trailing dot) and port,
    or None when it is not a Host header (empty, a bare port, user info, a path)."""
    found = _HOST.fullmatch(value.strip().lower())
    if found is None:
        return None
    name = (found["ip6"] or found["name"]).rstrip(".")
    port = int(found["port"]) if found["port"] else None
    if not name or (port is not None and not 0 < port < 65536):
        return None
    return name, port


def ip_literal(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback(name: str) -> bool:
    """localhost, a name under .localhost (RFC 6761), or an address in 127.0.0.0/8 or ::1."""
    address = ip_literal(name.strip("[]").lower())
    return name == "localhost" or name.endswith(".localhost") or (address is not None and address.is_loopback)


def exposure(host: str, api_key: str | None, insecure: bool = False) -> str:
    """What a server bound to `host` says of who may use it. Off loopback, it needs an API key, or an
    explicit `insecure` (as Jupyter asks): without one, anyone who reaches the address could read and
    write the graph."""
    if is_loopback(host):
        return "only this machine can reach it"
    if api_key:
        return "every request needs the API key (`Authorization: Bearer <REVERIE_API_KEY>`)"
    if insecure:
        return f"WARNING: no API key (--insecure): anyone who can reach {host} can read and write the graph"
    raise ReverieError(
        f"serving on {host}, which other machines can reach, with no API key would let anyone read and write the graph: "
        "set REVERIE_API_KEY=<secret> (clients then send `Authorization: Bearer <secret>`), or pass --insecure to serve without a key anyway"
    )


class SitePolicy:
    """Which Host and Origin headers a request may carry.

    Host: a loopback name or address, the address the server binds, a name in `allowed_hosts`
    (`*.example.com` for its subdomains, `*` for any), and, on a server bound to every interface
    (0.0.0.0, ::), any IP address and the machine's host name. A rebinding page reaches the server
    under its own DNS name, never an IP literal of it, so every other name is refused.
    Origin (sent by browsers, not by the CLI, curl or the SDKs): the page's own origin (same scheme
    host and port as the Host), one in `cors_origins`, one `cors_origin_regex` matches; never `null`."""

    def __init__(
        self, bound_host: str, allowed_hosts: list[str], cors_origins: list[str], cors_origin_regex: str | None
    ):
        bound = bound_host.strip("[]").lower()
        bound_ip = ip_literal(bound)
        self.bound_to_all = bound_ip is not None and bound_ip.is_unspecified
        self.names = {bound} | {h.lower().rstrip(".") for h in allowed_hosts if not h.startswith("*")}
        if self.bound_to_all:
            self.names.add(socket.gethostname().lower())
        self.any_host = "*" in allowed_hosts
        self.suffixes = tuple(h[1:].lower() for h in allowed_hosts if h.startswith("*."))
        self.cors_origins = list(cors_origins)
        self.cors_origin_regex = cors_origin_regex
        self.origins = {o.rstrip("/").lower() for o in cors_origins}
        self.origin_pattern = re.compile(cors_origin_regex) if cors_origin_regex else None

    @classmethod
    def from_settings(cls, settings) -> "SitePolicy":
        return cls(settings.host, settings.allowed_hosts, settings.cors_origins, settings.cors_origin_regex)

    def host_allowed(self, value: str) -> bool:
        parsed = parse_host(value)
        if parsed is None:
            return False
        name = parsed[0]
        if is_loopback(name) or self.any_host or name in self.names or (self.suffixes and name.endswith(self.suffixes)):
            return True
        return self.bound_to_all and ip_literal(name) is not None

    def origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip()
        if origin.lower() == "null":  # sandboxed frames, file: pages, some redirects: no site to trust
            return False
        if origin.rstrip("/").lower() in self.origins or (
            self.origin_pattern is not None and self.origin_pattern.fullmatch(origin)
        ):
            return True
        return same_origin(origin, host)

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """Why a request is refused (403), or None when its Host and Origin are admitted."""
        hosts = [v.decode("latin-1") for k, v in headers if k.lower() == b"host"]
        if len(hosts) != 1:
            return "refused: a request needs exactly one Host header"
        if not self.host_allowed(hosts[0]):
            return (
                f"refused: this server does not answer to the Host {excerpt(hosts[0])!r} (a page on another site may be reaching "
                "it through DNS rebinding); to serve under that name, add it to REVERIE_ALLOWED_HOSTS"
            )
        for origin in (v.decode("latin-1") for k, v in headers if k.lower() == b"origin"):
            if not self.origin_allowed(origin, hosts[0]):
                return (
                    f"refused: a web page from the origin {excerpt(origin)!r} may not call this server (a cross-site request); "
                    "to allow that site, add its origin to REVERIE_CORS_ORIGINS"
                )
        return None

    def cors_options(self) -> dict[str, Any]:
        """Starlette CORSMiddleware's arguments, for the origins admitted above. No cookies are
        used, so no credentials."""
        return {
            "allow_origins": self.cors_origins,
            "allow_origin_regex": self.cors_origin_regex,
            "allow_methods": ["GET", "HEAD", "POST"],
            "allow_headers": ["*"],
            "max_age": 600,
        }


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin (scheme://host[:port]) names the server the Host header names: the page the
    server itself sent (its /ui/, or the docs page), under any name the server answers to."""
    scheme, sep, rest = origin.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return False
    page, server = parse_host(rest.rstrip("/")), parse_host(host)
    if page is None or server is None:
        return False
    default = 443 if scheme == "https" else 80
    return page[0] == server[0] and (page[1] or default) == (server[1] or default)


async def send_json(
    send: Send, path: str, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
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

        self.requests = Counter(
            "reverie_http_requests_total",
            description="HTTP requests by route and status.",
            tag_keys=("route", "status"),
        )
        self.seconds = Histogram(
            "reverie_http_request_seconds",
            description="Seconds from request to the end of the reply, by route.",
            boundaries=[0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
            tag_keys=("route",),
        )

    def record(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status)})
        self.seconds.observe(seconds, tags={"route": route})


class Traffic:
    """The ingress replica's requests in flight, and whether it is draining: a server told to stop
    refuses new requests (503) and lets those in flight finish."""

    def __init__(self):
        self.in_flight = 0
        self.draining = False


class Guard:
    """ASGI middleware, outermost first: 503 once the server is draining; request metrics; 403 for a Host or an Origin of another site
    (before CORS, so a foreign page's preflight is refused too); CORS (a browser's preflight carries
    no Authorization header, so it is answered before the key is asked for, and a 401 still carries
    the CORS headers the page needs to read it); 401 without the API key (when one is set); 413 over
    the body limit."""

    def __init__(
        self,
        app,
        site: SitePolicy,
        api_key: str | None,
        max_body_bytes: int,
        recorder: RequestRecorder | None = None,
        traffic: Traffic | None = None,
        body_limits: dict[str, int] | None = None,
    ):
        self.app = app
        self.body_limits = body_limits or {}  # paths whose bodies have a limit of their own (a state file)
        self.traffic = traffic or Traffic()
        self.site = site
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.recorder = recorder
        self.cors = CORSMiddleware(self._keyed, **site.cors_options())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.traffic.draining:
            await send_json(
                send, scope.get("path", ""), 503, "the server is shutting down", [(b"connection", b"close")]
            )
            return
        self.traffic.in_flight += 1
        try:
            await self._recorded(scope, receive, send)
        finally:
            self.traffic.in_flight -= 1

    async def _recorded(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = {"code": 500}

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self.site.refusal(scope.get("headers", []))
            if refusal is not None:
                await send_json(send_recorded, scope.get("path", ""), 403, refusal)
            else:
                await self.cors(scope, receive, send_recorded)
        finally:
            if self.recorder is not None:
                route = scope.get("route")
                self.recorder.record(getattr(route, "path", "unmatched"), status["code"], time.perf_counter() - start)

    async def _keyed(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        headers = scope.get("headers", [])
        accept = next((v.decode("latin-1") for k, v in headers if k.lower() == b"accept"), "")
        if (
            self.api_key
            and not is_public(scope.get("method", ""), path, accept)
            and not bearer_ok(headers, self.api_key)
        ):
            await send_json(
                send,
                path,
                401,
                "missing or wrong API key: send `Authorization: Bearer <key>`",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        limit = self.body_limits.get(path, self.max_body_bytes)
        declared = next((v for k, v in headers if k.lower() == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, path, 413, f"the request body is {int(declared)} bytes; the limit is {limit}")
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
            if size > limit:
                await send_json(send, path, 413, f"the request body passes the limit of {limit} bytes")
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
