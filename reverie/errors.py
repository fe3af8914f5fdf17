"""Errors a user can cause. Each carries the HTTP status it maps to; the CLI prints one line and exits 2."""

from __future__ import annotations


class ReverieError(Exception):
    """Bad input or a state the user can fix; never a bug."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keeps the subclass and message across Ray's pickling
        return (type(self), (self.message,))


class ConfigError(ReverieError, ValueError):
    """A config's value out of its range, or two that do not go together: a ValueError to library
    callers, one line from the CLI, 400 over HTTP. It names the field, never a CLI flag."""


class IngestError(ReverieError):
    """A malformed line or file; the message starts with file:line."""


class NotFoundError(ReverieError):
    """A named thing (entity, verdict, dataset) that does not exist."""

    status = 404


class DatasetNotFoundError(NotFoundError):
    pass


class NoMatchError(ReverieError):
    """No entity in the graph matches the question."""

    status = 422


class EmptyGraphError(ReverieError):
    status = 409


class UnsupportedMediaError(ReverieError):
    """A request body of a content type the route does not take."""

    status = 415


class StoreUnavailableError(ReverieError):
    """REVERIE_HOME's graph store cannot be used as it is; the message names the file or the holder."""

    status = 503


class SnapshotError(StoreUnavailableError):
    """The graph snapshot is unreadable or inconsistent: never loaded as an empty graph."""


class StoreInUseError(StoreUnavailableError):
    """Another process holds the embedded vector store's lock."""
