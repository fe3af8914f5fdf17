"""The server's fractal network (issue 28): one FractalAssistant over the home, trained in a
background thread whose progress anyone can read, chatting, and its state and plot as bytes.

`FractalHost` holds no Ray: app.py hosts it as the `Fractal` deployment (one replica, so that one
training runs at a time and every route sees its progress), with MiniLM from the Encoders
deployment. The request bodies of Reverie's /v1/fractal routes are here too.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from reverie.data.qa import QA_GRAPHS, pairs_from_json
from reverie.errors import NotFoundError, ReverieError
from reverie.fractal import FractalAssistant
from reverie.models.fractal import FractalStateError

MAX_EPOCHS = 500
MAX_PAIRS = 50_000
REPLY_WORDS = 24
"""A reply's length in words unless the client asks for another (num_predict, max_tokens)."""
STATE_MAX_BYTES = 64 * 1024 * 1024
"""The largest state file PUT /v1/fractal/state takes, whatever max_body_bytes says: a network of
the largest shape (8,000 words, 24 nodes) is about 5 MB."""


class TrainingRunning(ReverieError):
    """A second training, or a load, while the fractal network trains."""

    status = 409


class FractalTrain(BaseModel):
    """POST /v1/fractal/train."""

    model_config = ConfigDict(extra="forbid")

    pairs: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=MAX_PAIRS,
        description='A Q&A file\'s pairs, seed 001\'s format: [{"question": "...", "answer": "..."}]. With 20 or '
        "more, a tenth (seeded) is held out to measure the training.",
    )
    graphs: list[Literal["world", "umls"]] | None = Field(
        default=None,
        max_length=len(QA_GRAPHS),
        description="Graphs whose facts become Q&A pairs too. Unset: none when `pairs` are given, else every one.",
    )
    epochs: int = Field(default=40, ge=1, le=MAX_EPOCHS)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class FractalChat(BaseModel):
    """POST /v1/fractal/chat."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4000)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0: the likeliest words; higher: sampled.")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1, description="Makes a sampled reply repeatable.")
    max_words: int = Field(default=REPLY_WORDS, ge=1, le=256)


class FractalReply(BaseModel):
    model: str
    reply: str


class FractalJob(BaseModel):
    """The last training the server ran (or runs): its progress by epoch, then its report or error."""

    state: Literal["idle", "running", "done", "failed", "stopped"] = "idle"
    phase: str = ""
    epoch: int = 0
    epochs: int = 0
    pairs: int | None = None
    loss: float | None = None
    nodes: int | None = None
    depth: int | None = None
    complexity: float | None = None
    seconds: float | None = None
    error: str | None = None
    report: dict[str, Any] | None = None


class FractalStatus(BaseModel):
    trained: bool
    nodes: int | None = None
    depth: int | None = None
    complexity: float | None = None
    weights: int | None = None
    vocabulary: int | None = None
    epochs: int | None = None
    trained_on: dict[str, int] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)
    training: FractalJob


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become None, through dicts and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class FractalHost:
    """The home's fractal network as the server keeps it: at most one training at a time, in a thread."""

    def __init__(self, home: str | Path, encode: Callable[[list[str]], np.ndarray] | None = None):
        self.assistant = FractalAssistant(home, encode)
        self._job = FractalJob()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ reading

    def job(self) -> dict[str, Any]:
        with self._guard:
            return finite(self._job.model_dump())

    def status(self) -> dict[str, Any]:
        known = self.assistant.status()
        known.pop("path", None)  # where the server keeps it is no client's business
        return finite({**known, "training": self.job()})

    def reply(
        self, message: str, temperature: float = 0.0, seed: int | None = None, max_words: int = REPLY_WORDS
    ) -> str:
        return self.assistant.reply(message, temperature=temperature, seed=seed, max_words=max_words)

    def state(self) -> bytes:
        """The state file's bytes (one safetensors file, its card inside)."""
        self.assistant.model()  # NotFoundError when there is none
        return self.assistant.home.fractal.read_bytes()

    def plot(self) -> bytes:
        """The complexity plot (PNG), drawn again when the network changed since it was drawn."""
        self.assistant.model()
        home = self.assistant.home
        if not home.fractal_plot.is_file() or home.fractal_plot.stat().st_mtime_ns < home.fractal.stat().st_mtime_ns:
            self.assistant.plot()
        if not home.fractal_plot.is_file():
            raise NotFoundError("the fractal network has no training history to plot")
        return home.fractal_plot.read_bytes()

    # ------------------------------------------------------------------ writing

    def train(
        self,
        pairs: list[dict[str, Any]] | None = None,
        graphs: list[str] | None = None,
        epochs: int = 40,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Start a training (the pairs checked first: a bad entry is a 422 naming it, and nothing
        starts); its progress is `job()`. A training already running: 409."""
        own = pairs_from_json(pairs, "pairs") if pairs is not None else []
        graphs = list(graphs) if graphs is not None else ([] if own else list(QA_GRAPHS))
        unknown = [g for g in graphs if g not in QA_GRAPHS]
        if unknown:
            raise ReverieError(f"unknown Q&A graph {unknown[0]!r}: choose from {', '.join(QA_GRAPHS)}")
        if not own and not graphs:
            raise ReverieError("nothing to train on: send `pairs`, or name `graphs`")
        if not 1 <= epochs <= MAX_EPOCHS:
            raise ReverieError(f"epochs must be from 1 to {MAX_EPOCHS}, not {epochs}")
        with self._guard:
            if self._job.state == "running":
                raise TrainingRunning(
                    f"the fractal network is training (epoch {self._job.epoch} of {self._job.epochs}): "
                    "wait for it, or stop it with DELETE /v1/fractal/train"
                )
            self._stop.clear()
            self._job = FractalJob(state="running", phase="encoding the questions", epochs=epochs)
            self._thread = threading.Thread(
                target=self._run, args=(own, graphs, epochs, seed), name="fractal-training", daemon=True
            )
            self._thread.start()
            return finite(self._job.model_dump())

    def stop(self) -> dict[str, Any]:
        """Ask a running training to stop after its epoch (what it learned is kept, as a finished one's)."""
        with self._guard:
            if self._job.state == "running":
                self._stop.set()
                self._job.phase = "stopping after this epoch"
            return finite(self._job.model_dump())

    def _run(self, own, graphs: list[str], epochs: int, seed: int) -> None:
        started = time.perf_counter()

        def progress(point: dict[str, Any]) -> None:
            with self._guard:
                job = self._job
                job.epoch, job.loss = int(point["epoch"]), point.get("loss")
                job.nodes, job.depth, job.complexity = point.get("nodes"), point.get("depth"), point.get("complexity")
                job.seconds = time.perf_counter() - started
                if job.phase != "stopping after this epoch":
                    job.phase = "training" if job.epoch < epochs else "measuring and saving"

        try:
            report = self.assistant.train(
                pairs=own, graphs=graphs, epochs=epochs, seed=seed, progress=progress, should_stop=self._stop.is_set
            )
        except Exception as error:  # noqa: BLE001 - the job says why; a client reads it from GET /v1/fractal
            with self._guard:
                self._job.state, self._job.phase = "failed", ""
                self._job.error = (
                    error.message if isinstance(error, ReverieError) else f"{type(error).__name__}: {error}"
                )
                self._job.seconds = time.perf_counter() - started
            return
        with self._guard:
            job = self._job
            job.state = "stopped" if self._stop.is_set() else "done"
            job.phase, job.pairs, job.report = "", report.pairs, finite(asdict(report))
            job.seconds = time.perf_counter() - started

    def load(self, data: bytes) -> dict[str, Any]:
        """Make the uploaded state the home's network; anything else is a 422 and the home's network
        stays as it was."""
        with self._guard:
            if self._job.state == "running":
                raise TrainingRunning("the fractal network is training: load a state once it is done")
        if not data:
            raise FractalStateError("the upload is empty: send a state file (GET /v1/fractal/state gives one)")
        with tempfile.TemporaryDirectory(prefix="reverie-fractal-") as folder:
            path = Path(folder) / "upload.safetensors"
            path.write_bytes(data)
            try:
                self.assistant.load(path)
            except FractalStateError as error:
                raise FractalStateError(error.message.replace(str(path), "the upload")) from None
        return self.status()
