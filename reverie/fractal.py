"""The home's fractal network as a chat model (issue 28): trained on Q&A pairs (seed 001's JSON
file and pairs generated from the graphs), chatting, talking with another OpenAI-compatible
server, saved and loaded atomically, and its growth plotted.

`reverie fractal train|chat|talk|save|load`, the server's /v1/fractal routes and its `fractal`
model on the Ollama and OpenAI faces all use `FractalAssistant`. The network and its baselines are
reverie.models.fractal and reverie.models.fractal_qa; the pairs and measures reverie.data.qa.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reverie.atomic import atomic_copy, atomic_file
from reverie.data.qa import QA_GRAPHS, QAPair, exact_match, graph_pairs, normalise, parroted, read_qa_file, token_f1
from reverie.errors import NotFoundError, ReverieError
from reverie.home import Home
from reverie.models.fractal_qa import QAModel, QASettings, QATraining, load_qa, new_model, read_card, save_qa, train_qa

FRACTAL_MODEL = "fractal"
"""The fractal network's name on the Ollama and OpenAI faces."""
DEFAULT_FRACTAL = {"max_depth": 7, "max_nodes": 24, "grow_every": 50, "grow_threshold": 0.3, "start_depth": 3}
"""The fractal core's settings unless told otherwise: a chain three deep that grows to at most 24 nodes, 7 deep."""
FILE_HELD_OUT = 0.1
"""A user's file: this share of its pairs (seeded) is held out to measure the training, when it has 20 or more."""


@dataclass
class TrainReport:
    pairs: int
    held_out: int
    epochs: int
    loss: float
    nodes: int
    depth: int
    weights: int
    exact_match: float | None
    token_f1: float | None
    parroting: float | None
    seconds: float
    sources: dict[str, int] = field(default_factory=dict)


class FractalAssistant:
    """The fractal chat model of one home (HOME/models/fractal.safetensors); thread-safe."""

    def __init__(self, home: str | Path, encode: Callable[[list[str]], np.ndarray] | None = None):
        self.home = Home(Path(home))
        self._encode = encode
        self._model: QAModel | None = None
        self._stamp: tuple[int, int, int] | None = None  # the state file the model was read from
        self._lock = threading.RLock()

    # ---------------------------------------------------------------------------- parts

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._encode is None:
            from reverie.encoders.text import TextEncoder

            self._encode = TextEncoder().encode
        return np.asarray(self._encode(texts), dtype=np.float32)

    def exists(self) -> bool:
        return self.home.fractal.is_file()

    def model(self) -> QAModel:
        """The home's network, read again when its file changed (another process trained or loaded one)."""
        with self._lock:
            stamp = _stamp(self.home.fractal)
            if stamp is None:
                raise NotFoundError(
                    f"no fractal network in {self.home.root}: train one with `reverie fractal train` "
                    "(or load a saved one with `reverie fractal load PATH`)"
                )
            if self._model is None or stamp != self._stamp:
                self._model = load_qa(self.home.fractal)
                self._stamp = stamp
            return self._model

    def _keep(self, model: QAModel) -> None:
        """`model` is now the home's network (its file just written)."""
        self._model, self._stamp = model, _stamp(self.home.fractal)

    # ---------------------------------------------------------------------------- training

    def pairs(
        self,
        qa_file: str | Path | None = None,
        graphs: Sequence[str] = QA_GRAPHS,
        seed: int = 0,
        pairs: Sequence[QAPair] | None = None,
    ) -> tuple[list[QAPair], list[QAPair]]:
        """(train, held-out): the graphs' generated pairs and the file's (and `pairs`, a file's pairs
        already read, as the server gets them), each split as it splits."""
        unknown = [g for g in graphs if g not in QA_GRAPHS]
        if unknown:
            raise ReverieError(f"unknown Q&A graph {unknown[0]!r}: choose from {', '.join(QA_GRAPHS)}")
        train: list[QAPair] = []
        test: list[QAPair] = []
        for name in graphs:
            train += graph_pairs(name, "train", seed=seed)
            test += graph_pairs(name, "test", seed=seed)
        own = (read_qa_file(qa_file) if qa_file is not None else []) + list(pairs or [])
        if own:
            if len(own) >= 20:
                order = np.random.default_rng(seed).permutation(len(own))
                cut = int(round(FILE_HELD_OUT * len(own)))
                test += [own[i] for i in sorted(order[:cut])]
                own = [own[i] for i in sorted(order[cut:])]
            train += own
        if not train:
            raise ReverieError("nothing to train on: give a Q&A file (--qa FILE.json) or graphs")
        return train, test

    def train(
        self,
        qa_file: str | Path | None = None,
        graphs: Sequence[str] = QA_GRAPHS,
        epochs: int = 40,
        seed: int = 0,
        fractal: dict[str, Any] | None = None,
        resume: bool = False,
        progress: Callable[[dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        pairs: Sequence[QAPair] | None = None,
    ) -> TrainReport:
        """Train on the pairs and replace the home's network (written, then renamed); `resume`
        goes on from the saved network (its vocabulary: words it never saw read as unknown).
        `pairs` are a Q&A file's pairs already read (reverie.data.qa.pairs_from_json). The network
        in use keeps answering while a new one trains: the lock is held only to swap them."""
        if epochs < 1:
            raise ReverieError(f"epochs must be at least 1, not {epochs}")
        train, test = self.pairs(qa_file, graphs, seed, pairs)
        started = time.perf_counter()
        if resume:
            model = load_qa(self.home.fractal) if self.exists() else None
            if model is None:
                raise NotFoundError(f"no fractal network in {self.home.root} to resume: drop --resume")
        else:
            torch.manual_seed(seed)
            model = new_model(train, QASettings(core="fractal", fractal={**DEFAULT_FRACTAL, **(fractal or {})}))
        vectors = self.encode([p.question for p in train])
        from reverie.runs import RunLog

        with RunLog(self.home.root, "fractal", "qa") as log:
            points = train_qa(
                model,
                train,
                vectors,
                QATraining(epochs=epochs, seed=seed),
                progress=log.and_then(progress),
                should_stop=should_stop,
            )
        measured = self.measure(model, test, train) if test else {}
        sources: dict[str, int] = {}
        for p in train:
            sources[p.source] = sources.get(p.source, 0) + 1
        with self._lock:
            self.home.models.mkdir(parents=True, exist_ok=True)
            save_qa(model, self.home.fractal, extra={"trained_on": sources})
            self._keep(model)
            self.plot()
        stats = model.fractal.stats() if model.fractal is not None else None
        return TrainReport(
            pairs=len(train),
            held_out=len(test),
            epochs=len(points),
            loss=points[-1]["loss"] if points else float("nan"),
            nodes=stats.nodes if stats else 0,
            depth=stats.depth if stats else 0,
            weights=model.weights(),
            exact_match=measured.get("exact_match"),
            token_f1=measured.get("token_f1"),
            parroting=measured.get("parroting"),
            seconds=time.perf_counter() - started,
            sources=sources,
        )

    def measure(self, model: QAModel, test: Sequence[QAPair], train: Sequence[QAPair]) -> dict[str, float]:
        """Exact match, token F1 and the parroting rate on held-out pairs (greedy replies)."""
        said = model.answer(torch.as_tensor(self.encode([p.question for p in test])), [p.question for p in test])
        taught = {normalise(p.answer) for p in train}
        return {
            "exact_match": float(np.mean([exact_match(s, p.accepted()) for s, p in zip(said, test, strict=True)])),
            "token_f1": float(np.mean([token_f1(s, p.accepted()) for s, p in zip(said, test, strict=True)])),
            "parroting": float(np.mean([parroted(s, p.accepted(), taught) for s, p in zip(said, test, strict=True)])),
        }

    # ---------------------------------------------------------------------------- chatting

    def reply(self, message: str, temperature: float = 0.0, seed: int | None = None, max_words: int = 24) -> str:
        if not message.strip():
            raise ReverieError("say something: the message is empty")
        if not 0.0 <= temperature <= 2.0:
            raise ReverieError(f"temperature must be between 0 and 2, not {temperature}")
        model = self.model()
        vector = torch.as_tensor(self.encode([message]))
        with self._lock:
            return model.answer(vector, [message], temperature=temperature, seed=seed, max_words=max_words)[0]

    # ---------------------------------------------------------------------------- state

    def save(self, path: str | Path) -> Path:
        """Copy the home's network to `path` (written, then renamed)."""
        self.model()  # a clear error when there is none
        return atomic_copy(self.home.fractal, Path(path))

    def load(self, path: str | Path) -> dict[str, Any]:
        """Make the state at `path` the home's network; a file that is not one is refused, and the
        home's network is left as it was."""
        model = load_qa(path)  # FractalStateError before anything is touched
        with self._lock:
            self.home.models.mkdir(parents=True, exist_ok=True)
            atomic_copy(path, self.home.fractal)
            self._keep(model)
            self.plot()
        return self.status()

    def status(self) -> dict[str, Any]:
        if not self.exists():
            return {"trained": False, "path": str(self.home.fractal)}
        card = read_card(self.home.fractal)
        model = self.model()
        stats = model.fractal.stats() if model.fractal is not None else None
        return {
            "trained": True,
            "path": str(self.home.fractal),
            "epochs": len(card.get("history", [])),
            "trained_on": card.get("trained_on", {}),
            "weights": model.weights(),
            "nodes": stats.nodes if stats else None,
            "depth": stats.depth if stats else None,
            "complexity": stats.complexity if stats else None,
            "vocabulary": len(model.vocabulary),
            "history": card.get("history", []),
        }

    def plot(self) -> Path | None:
        """Complexity, node count and depth (and the loss) over the epochs, as a PNG beside the state."""
        model = self._model
        if model is None or not model.history:
            return None
        return plot_history(model.history, self.home.fractal_plot)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (a rename over it changes the inode), or None."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def plot_history(history: Sequence[dict[str, Any]], path: Path, title: str = "fractal network") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = list(range(1, len(history) + 1))
    panels = [("loss", "loss"), ("complexity", "complexity (spectral entropy)"), ("nodes", "nodes"), ("depth", "depth")]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.0))
    for axis, (key, label) in zip(axes, panels, strict=True):
        axis.plot(epochs, [point.get(key, float("nan")) for point in history], color="#4b3f8f")
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        figure.savefig(handle, format="png", dpi=90)
    plt.close(figure)
    return path


# -------------------------------------------------------------------------------- talking


@dataclass
class TalkLine:
    turn: int
    speaker: str
    text: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TalkError(ReverieError):
    """The other server did not answer as an OpenAI-compatible server does."""

    status = 502


def talk(
    assistant: FractalAssistant,
    server: str,
    model: str,
    turns: int = 5,
    delay: float = 0.0,
    opening: str = "Hello! What do you know about glass?",
    api_key: str | None = None,
    temperature: float = 0.7,
    seed: int | None = 0,
    on_line: Callable[[TalkLine], None] | None = None,
    timeout: float = 120.0,
) -> list[TalkLine]:
    """A conversation between the fractal network and another server's model: the opening goes to
    the other model, and each turn the fractal network answers it and the other model answers back
    (the whole conversation so far as its messages). Returns the transcript."""
    import httpx

    if turns < 1:
        raise ReverieError(f"turns must be at least 1, not {turns}")
    if delay < 0:
        raise ReverieError(f"delay must be 0 or more, not {delay}")
    url = server.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ReverieError(f"the server is a URL (http://host:port), not {server!r}")
    endpoint = url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    assistant.model()  # a clear error before the first request when there is no network
    lines: list[TalkLine] = []
    messages: list[dict[str, str]] = [{"role": "user", "content": opening}]

    def note(turn: int, speaker: str, text: str, began: float) -> None:
        line = TalkLine(turn, speaker, text, time.perf_counter() - began)
        lines.append(line)
        if on_line is not None:
            on_line(line)

    note(0, "opening", opening, time.perf_counter())
    with httpx.Client(timeout=timeout, headers=headers) as client:
        for turn in range(1, turns + 1):
            began = time.perf_counter()
            try:
                response = client.post(endpoint, json={"model": model, "messages": messages, "stream": False})
            except httpx.HTTPError as error:
                raise TalkError(f"{endpoint} did not answer: {error}") from error
            if response.status_code != 200:
                raise TalkError(f"{endpoint} answered {response.status_code}: {response.text[:300]}")
            try:
                theirs = response.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise TalkError(f"{endpoint} answered with no chat completion: {response.text[:300]}") from error
            note(turn, model, theirs, began)
            messages.append({"role": "assistant", "content": theirs})
            if delay:
                time.sleep(delay)
            began = time.perf_counter()
            ours = assistant.reply(theirs or "...", temperature=temperature, seed=None if seed is None else seed + turn)
            note(turn, FRACTAL_MODEL, ours, began)
            messages.append({"role": "user", "content": ours or "..."})
            if delay and turn < turns:
                time.sleep(delay)
    return lines
