"""The CLI as a client of the `reverie serve` that holds its home, as `ollama run` talks to `ollama serve`.

A running server notes its URL and API key in `Home.server` (owner-only, beside the store's lock,
which the server holds). `reverie ask | ingest | stats` find the note and ask the server over HTTP
instead of starting Ray, which could not open the store anyway. No Ray here, and only the standard
library's HTTP client: a question through a running server costs a Python start and one request.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from reverie.atomic import atomic_write
from reverie.config import Settings
from reverie.errors import ReverieError

READY_WAIT_S = 300.0  # a server still loading its models is waited for, this long at most


@dataclass(frozen=True)
class ServerNote:
    """What a running `reverie serve` writes about itself into its home."""

    url: str
    pid: int
    host: str
    api_key: str | None
    max_body_bytes: int
    since: float

    def write(self, path: Path) -> None:
        atomic_write(path, json.dumps(self.__dict__).encode(), mode=0o600)  # it holds the API key

    @staticmethod
    def read(path: Path) -> ServerNote | None:
        try:
            return ServerNote(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        """False when the note was left by a server on this machine that has died."""
        if self.host != socket.gethostname():
            return True  # another machine's process: only its HTTP answer can tell
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def forget_server(path: Path, pid: int) -> None:
    """Remove the note, if it is still the one this process wrote."""
    note = ServerNote.read(path)
    if note is not None and note.pid == pid and note.host == socket.gethostname():
        path.unlink(missing_ok=True)


class Server:
    """A running `reverie serve`, over its HTTP API. Errors come back as ReverieErrors carrying the
    server's status and message, so the CLI prints and exits as it does for its own."""

    def __init__(self, note: ServerNote, timeout_s: float = 600.0):
        self.note = note
        self.url = note.url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.note.api_key:
            headers["Authorization"] = f"Bearer {self.note.api_key}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s or self.timeout_s) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise ServerError(_detail(exc), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerUnreachable(f"the server at {self.url} did not answer ({reason})") from None

    def ask(self, query):
        """POST /v1/query: the Verdict."""
        from reverie.schemas import Verdict

        return Verdict.model_validate(self.request("POST", "/v1/query", query.model_dump_json().encode()))

    def ingest(self, triples: list, entities: list, source: str):
        """POST /v1/ingest, in parts that each fit the server's body limit; one report of them all."""
        from reverie.schemas import IngestReport, IngestRequest

        parts, reports = _parts(triples, entities, source, self.note.max_body_bytes), []
        for part in parts:
            body = IngestRequest.model_construct(**part).model_dump_json().encode()
            reports.append(IngestReport.model_validate(self.request("POST", "/v1/ingest", body)))
        first = reports[0]
        total = lambda field: sum(getattr(r, field) for r in reports)  # noqa: E731
        folded: dict[str, int] = {}
        for report in reports:
            for policy, count in report.folded.items():
                folded[policy] = folded.get(policy, 0) + count
        return first.model_copy(
            update={
                "source": source,
                **{f: total(f) for f in ("triples_read", "triples_added", "entities_added", "relations_added")},
                "seconds": total("seconds"),
                "folded": folded,
            }
        )

    def health(self) -> dict:
        """/healthz's reply: {"status": "ok", "graph": ...}, or {"status": "starting", ...} (503)."""
        try:
            return self.request("GET", "/healthz", timeout_s=10)
        except ServerError as exc:
            if exc.status == 503:
                return {"status": "starting"}
            raise

    def wait_ready(self, wait_s: float = READY_WAIT_S, message=None) -> dict:
        """Health, once the server is ready (every deployment up, its models loaded)."""
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            health = self.health()
            if health.get("status") == "ok":
                return health
            if time.monotonic() > deadline:
                raise ReverieError(f"the server at {self.url} was still starting after {wait_s:.0f} s")
            if not told and message is not None:
                message(f"waiting for the server at {self.url} to finish starting")
                told = True
            time.sleep(0.5)


class ServerError(ReverieError):
    """An error reply of the server: its message, and its status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return (type(self), (self.message, self.status))


class ServerUnreachable(ReverieError):
    """No answer at the noted URL."""


MAX_TRIPLES_PER_REQUEST = 100_000  # IngestRequest's own bound


def _parts(triples: list, entities: list, source: str, max_body_bytes: int) -> list[dict]:
    """The ingest as requests under the body limit (with room for JSON's overhead): the entities go
    with the part whose triples first name them."""
    per_triple = max(1, len(json.dumps([t.model_dump() for t in triples[:200]])) // max(1, min(200, len(triples))))
    size = max(1, min(MAX_TRIPLES_PER_REQUEST, int(0.5 * max_body_bytes / per_triple)))
    by_name = {e.name: e for e in entities}
    parts = []
    for start in range(0, len(triples), size):
        chunk = triples[start : start + size]
        names = dict.fromkeys(n for t in chunk for n in (t.head, t.tail) if n in by_name)
        parts.append({"triples": chunk, "entities": [by_name.pop(n) for n in names], "source": source[:200]})
    if parts and by_name:  # typed entities no triple names: sent with the last part, as one ingest would take them
        parts[-1]["entities"] += list(by_name.values())
    return parts


def _detail(exc: urllib.error.HTTPError) -> str:
    """The error a reply carries, in one line: Reverie's {"detail": ...}, a 422's first field."""
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    if isinstance(detail, list) and detail:
        first = detail[0]
        field = ".".join(str(p) for p in first.get("loc", []) if p != "body")
        return f"{field}: {first.get('msg')}" if field else str(first.get("msg"))
    return str(detail) if detail else f"the server answered {exc.code} {exc.reason}"


def running_server(settings: Settings, message=None) -> Server | None:
    """The server that holds settings.home, once ready; None when none is noted or the noted one is
    gone (a note left by a server killed with SIGKILL is removed)."""
    path = settings.paths.server
    note = ServerNote.read(path)
    if note is None:
        return None
    if not note.alive():
        path.unlink(missing_ok=True)
        return None
    server = Server(note)
    try:
        server.wait_ready(message=message)
    except ServerUnreachable:
        if note.host == socket.gethostname():  # noted, alive, but not serving: not ours to use
            return None
        raise
    return server
