"""What a face is: a router holding its routes, and the shape of its errors (the body a client reads,
and its schema in the OpenAPI document). Also what the faces' routes declare with their errors: the
statuses a route answers with besides those every route has, and excerpts of what a client sent."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter

SSE = "text/event-stream"
STATUS_TEXT = {
    400: "Refused: a body that cannot be parsed (nested too deeply), or a field or value Reverie does not support",
    401: "Missing or wrong API key",
    403: "Refused: a Host the server does not answer to, or an Origin not allowed (docs/security.md)",
    404: "Not found",
    409: "The knowledge graph is empty, or (the fractal network) a training is running",
    413: "The request body is over the limit",
    415: "Unsupported media type",
    422: "The body fails validation, or (questions) no entity matches",
    503: "No LLM backend can answer, or the server is still starting or shutting down",
}


def errors(*statuses: int) -> dict[int, dict[str, Any]]:
    """A route's `responses` for the errors it answers with besides 401 (every route, with an API key
    set), 403 (every route: a foreign Host or Origin) and, for POST, 400, 413 and 422. The app's
    OpenAPI document gives each the body of the route's face."""
    return {status: {"description": STATUS_TEXT[status]} for status in statuses}


@dataclass(frozen=True)
class Face:
    """One API the server speaks. `folders` are path prefixes the face owns beyond its routes, so
    that an unknown path there (a 404) is still answered in its shape."""

    router: APIRouter
    error_name: str  # the error body's schema in the OpenAPI document's components
    error_schema: dict[str, Any]
    error_body: Callable[[int, str], dict[str, Any]]
    # A 422's body from FastAPI's list of failing fields; unset, one message naming them.
    invalid_body: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None
    folders: tuple[str, ...] = ()

    def owns(self, path: str) -> bool:
        return path.startswith(self.folders) or any(route.path_regex.match(path) for route in self.router.routes)

    def invalid(self, errors: list[dict[str, Any]]) -> dict[str, Any]:
        if self.invalid_body is not None:
            return self.invalid_body(errors)
        message = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors)
        return self.error_body(422, excerpt(message, 1000))


_EXCERPT = reprlib.Repr()  # depth- and length-limited, so a deeply nested value cannot recurse
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother = 3, 60, 60
_EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxtuple = _EXCERPT.maxset = 4


def excerpt(value: Any, limit: int = 80) -> Any:
    """At most `limit` characters of what a client sent, for an error message: numbers, booleans and
    None as they are; a long string cut; anything else as a short, depth-limited repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    text = _EXCERPT.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
