"""Training-run logs: what `reverie train policy` and `reverie train tuner` record as they go, for
the web page's curves (GET /v1/runs) and for anyone reading the files.

One run is one JSON-lines file, REVERIE_HOME/runs/<id>.jsonl: a header line {"run", "kind", "name",
"started"}, then one line per training iteration, appended and flushed as it ends, so a run still
training shows its curve so far. A log only grows, so it is appended to rather than rewritten; a
reader skips a last line cut short by a crash. NaN is written as null (JSON has no NaN).

Beside it, REVERIE_HOME/runs/<id>/ holds the run's TensorBoard event files (`tensorboard --logdir
REVERIE_HOME/runs`): one scalar per numeric field of each point, nested dicts flattened with "/"
("loss/policy"), at the point's "iteration", "step" or "epoch" (else its count), flushed with each
point; non-finite values and anything not a number are left out. torch.utils.tensorboard is imported
on the first point, not with this module (the web server reads runs without it); without the
tensorboard package a run still writes its JSON lines and logs one warning.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import re
import uuid
import weakref
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from reverie.errors import NotFoundError
from reverie.home import Home
from reverie.schemas import Run, RunSummary

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_STEP_FIELDS = ("iteration", "step", "epoch")


def _plain(value: Any) -> Any:
    """A value JSON can carry: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _scalars(point: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) for each finite number in point, nested dicts flattened with "/"; a bool is no number."""
    for key, value in point.items():
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _scalars(value, f"{tag}/")
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                yield tag, number


def _step(point: dict[str, Any], count: int) -> tuple[str | None, int]:
    """The point's step: its first integral "iteration", "step" or "epoch" field (and that field's name), else count."""
    for field in _STEP_FIELDS:
        value = point.get(field)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
            if number.is_integer():
                return field, int(number)
    return None, count


class RunLog:
    """The log of one training run; call it with each iteration's numbers. Its JSON lines go to `path`,
    its TensorBoard events to the folder `events`; `close()` (or a `with` block) closes the event
    writer, and a log never closed has its events flushed after each point and closed at exit."""

    def __init__(self, home: str | Path, kind: str, name: str):
        started = datetime.now(timezone.utc)
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name)[:80] or "run"
        self.id = f"{kind}-{safe_name}-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.path = Home(home).runs / f"{self.id}.jsonl"
        self.events = self.path.parent / self.id  # runs/<id>/, beside runs/<id>.jsonl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"run": self.id, "kind": kind, "name": name, "started": started.isoformat()}
        with open(self.path, "x", encoding="utf-8") as handle:
            handle.write(json.dumps(header) + "\n")
        self._count = 0
        self._writer: Any = None  # a torch.utils.tensorboard.SummaryWriter, opened on the first point
        self._no_tensorboard = False
        self._closer: weakref.finalize | None = None

    def __call__(self, point: dict[str, Any]) -> None:
        line = json.dumps({key: _plain(value) for key, value in point.items()})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        self._count += 1
        writer = self._tensorboard()
        if writer is None:
            return
        step_field, step = _step(point, self._count)
        for tag, value in _scalars(point):
            if tag != step_field:
                writer.add_scalar(tag, value, global_step=step)
        writer.flush()  # a run still training shows its curve so far

    def _tensorboard(self) -> Any:
        """The event writer, opened the first time; None (after one warning) without tensorboard."""
        if self._writer is None and not self._no_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                self._no_tensorboard = True
                log.warning("run %s: no TensorBoard events (%s); its JSON lines are written as ever", self.id, exc)
                return None
            self._writer = SummaryWriter(log_dir=str(self.events))
            # a caller that never closes still gets its events closed, when the log is dropped or at exit
            self._closer = weakref.finalize(self, self._writer.close)
        return self._writer

    def close(self) -> None:
        """Close the TensorBoard event writer; a later point opens a new event file in the same folder."""
        if self._closer is not None:
            self._closer()  # closes the writer, once
        self._writer = None
        self._closer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

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
        if not path.is_file():
            continue  # a folder (runs/<id>/ holds a run's TensorBoard events) is no log
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
