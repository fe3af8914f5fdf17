"""Training-run logs: what `reverie train policy` and `reverie train tuner` record as they go, for
the web page's curves (GET /v1/runs) and for anyone reading the files.

One run is one JSON-lines file, REVERIE_HOME/runs/<id>.jsonl: a header line {"run", "kind", "name",
"started"}, then one line per training iteration, appended and flushed as it ends, so a run still
training shows its curve so far. A log only grows, so it is appended to rather than rewritten; a
reader skips a last line cut short by a crash. NaN is written as null (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reverie.errors import NotFoundError
from reverie.home import Home
from reverie.schemas import Run, RunSummary

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _plain(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """The log of one training run; call it with each iteration's numbers."""

    def __init__(self, home: str | Path, kind: str, name: str):
        started = datetime.now(timezone.utc)
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:80] or "run"
        self.id = f"{kind}-{safe_name}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.path = Home(home).runs / f"{self.id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"run": self.id, "kind": kind, "name": name, "started": started.isoformat()}
        with open(self.path, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(header) + "\n")

    def __call__(self, point: dict[str, Any]) -> None:
        line = json.dumps({key: _plain(value) for key, value in point.items()})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def and_then(self, progress: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
        """A progress callback that logs each point, then passes it on to `progress`."""

        def both(point: dict[str, Any]) -> None:
            self(point)
            if progress is not None:
                progress(point)

        return both


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    points: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line a crash cut short
            if not isinstance(record, dict):
                continue
            if header is None:
                header = record
            else:
                points.append(record)
    if header is None or "run" not in header:
        raise ValueError(f"{path} is not a run log")
    return header, points


def list_runs(home: str | Path) -> list[RunSummary]:
    """Every run under home, newest first; files that are not run logs are passed over."""
    runs = []
    for path in Home(home).runs.glob("*.jsonl"):
        try:
            header, points = _read(path)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        runs.append(
            RunSummary(
                id=path.stem,
                kind=str(header.get("kind", "")),
                name=str(header.get("name", "")),
                started=str(header.get("started", "")),
                iterations=len(points),
                last=points[-1] if points else {},
            )
        )
    return sorted(runs, key=lambda r: (r.started, r.id), reverse=True)


def read_run(home: str | Path, run_id: str) -> Run:
    path = Home(home).runs / f"{run_id}.jsonl"
    if not _RUN_ID.match(run_id) or not path.is_file():
        raise NotFoundError(f"no training run {run_id!r}: GET /v1/runs lists them")
    try:
        header, points = _read(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise NotFoundError(f"training run {run_id!r} cannot be read: {exc}") from None
    return Run(
        id=run_id,
        kind=str(header.get("kind", "")),
        name=str(header.get("name", "")),
        started=str(header.get("started", "")),
        points=points,
    )
