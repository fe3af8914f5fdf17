"""The faces the server speaks, each a router with its error shape: Reverie's own API, OpenAI's and
Ollama's. Their routes are the one list of which path belongs to which face: an error takes the
shape of the face a path belongs to, whether a route or the Guard (before routing) answers it."""

from typing import Any

from reverie.serve.faces import ollama, openai, reverie
from reverie.serve.faces.face import Face

FACES = (reverie.FACE, openai.FACE, ollama.FACE)  # in the order the app serves them


def face(path: str) -> Face:
    """The face with a route for the path (or a folder holding it); Reverie's for any other (/docs, an unknown path)."""
    return next((f for f in FACES if f.owns(path)), reverie.FACE)


def error_content(path: str, status: int, message: str) -> dict[str, Any]:
    """An error body in the shape the path's clients read."""
    return face(path).error_body(status, message)
