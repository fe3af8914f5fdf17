"""The headline classifier: the network Reverie's learning-rate control agent learns to tune. No Ray.

A classifier (CLASSIFIERS: "mlp", "cnn", a 1-D CNN over the embedding) trains on a headline corpus
(reverie/data/headlines.py: HEADLINE_DATASETS) embedded once (EMBEDDERS: "minilm", the bundled
MiniLM; "smollm2", the bundled SmolLM2's mean-pooled hidden states, the seed's "LLM embeddings"),
cached in REVERIE_HOME (Home.embeddings).
"""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reverie.agents.lr_control.trainees.base import TrainingReport
from reverie.atomic import atomic_write
from reverie.data.headlines import HEADLINE_DATASETS, TextDataset, load_texts, stratified_split
from reverie.errors import DatasetNotFoundError, ReverieError
from reverie.home import Home


# ------------------------------------------------------------------ embeddings
def _minilm(texts: list[str], home: Path, progress: Callable[[int, int], None] | None) -> np.ndarray:
    from reverie.encoders import TextEncoder

    return _batched(TextEncoder().encode, texts, progress)


def _smollm2(texts: list[str], home: Path, progress: Callable[[int, int], None] | None) -> np.ndarray:
    from reverie.llm.local import LocalLLM

    llm = LocalLLM(Home(home).models).load()
    return _batched(llm.embed, texts, progress)


def _batched(encode: Callable[[list[str]], np.ndarray], texts: list[str], progress, batch: int = 1024) -> np.ndarray:
    parts = []
    for start in range(0, len(texts), batch):
        parts.append(encode(texts[start : start + batch]))
        if progress is not None:
            progress(min(start + batch, len(texts)), len(texts))
    return np.concatenate(parts).astype(np.float32)


EMBEDDERS: dict[str, Callable[..., np.ndarray]] = {"minilm": _minilm, "smollm2": _smollm2}
"""Sentence embedders by name: (texts, REVERIE_HOME, progress) -> float32 [n, d]."""


def embed_dataset(
    home: str | Path, data: TextDataset, embedder: str = "minilm", progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """The dataset's embeddings, computed once and cached in the home (a stale cache,
    whose row count no longer matches the texts, is computed again)."""
    if embedder not in EMBEDDERS:
        raise ReverieError(f"unknown embedder {embedder!r}: use one of {', '.join(EMBEDDERS)}")
    path = Home(home).embeddings(data.name, embedder)
    if path.is_file():
        vectors = np.load(path)
        if len(vectors) == len(data):
            return vectors
    vectors = EMBEDDERS[embedder](data.texts, Path(home), progress)
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    atomic_write(path, buffer.getvalue())
    return vectors


@dataclass
class Splits:
    """A dataset's embeddings cut by its fixed split, as float32 features and int64 labels."""

    name: str
    x: tuple[np.ndarray, np.ndarray, np.ndarray]  # train, val, test
    y: tuple[np.ndarray, np.ndarray, np.ndarray]
    classes: list[str]

    @property
    def dim(self) -> int:
        return int(self.x[0].shape[1])


@functools.lru_cache(maxsize=4)
def load_splits(home: str, dataset: str, embedder: str = "minilm") -> Splits:
    """Embedded train/val/test splits of `dataset` (cached on disk, and in this process)."""
    data = load_texts(dataset)
    vectors = embed_dataset(home, data, embedder)
    split = stratified_split(data.labels)
    train, val, test = (np.flatnonzero(split == k) for k in range(3))
    return Splits(
        dataset,
        (vectors[train], vectors[val], vectors[test]),
        (data.labels[train], data.labels[val], data.labels[test]),
        data.classes,
    )


# ------------------------------------------------------------------ classifiers
def _mlp(dim: int, classes: int, hidden: int, dropout: float):
    from torch import nn

    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, classes))


def _cnn(dim: int, classes: int, hidden: int, dropout: float):
    """A 1-D CNN reading the embedding as a signal: two strided convolutions, max-pooled."""
    from torch import nn

    return nn.Sequential(
        nn.Unflatten(1, (1, dim)),
        nn.Conv1d(1, 32, kernel_size=9, stride=3),
        nn.ReLU(),
        nn.Conv1d(32, 64, kernel_size=7, stride=3),
        nn.ReLU(),
        nn.AdaptiveMaxPool1d(4),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(256, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


CLASSIFIERS: dict[str, Callable[..., Any]] = {"mlp": _mlp, "cnn": _cnn}
"""Classifiers by name: (input dim, classes, hidden size, dropout) -> torch module."""


@dataclass(frozen=True)
class HeadlineConfig:
    """One headline-classifier training run; the learning rate and weight decay are set as it goes."""

    dataset: str = "healthtweets"
    """A key of HEADLINE_DATASETS."""
    embedder: str = "minilm"
    """A key of EMBEDDERS."""
    model: str = "mlp"
    """A key of CLASSIFIERS."""
    hidden: int = 256
    """Hidden size (the CNN's dense layer)."""
    dropout: float = 0.1
    batch_size: int = 128
    budget: int = 400
    """Gradient steps the run may take: its compute."""
    train_subset: int | None = None
    """Train on a seeded subset of this many examples (None: the whole train split)."""

    def __post_init__(self) -> None:
        if self.dataset not in HEADLINE_DATASETS:
            raise DatasetNotFoundError(
                f"unknown headline dataset {self.dataset!r}: use one of {', '.join(HEADLINE_DATASETS)}"
            )
        if self.model not in CLASSIFIERS:
            raise ReverieError(f"unknown classifier {self.model!r}: use one of {', '.join(CLASSIFIERS)}")
        if self.embedder not in EMBEDDERS:
            raise ReverieError(f"unknown embedder {self.embedder!r}: use one of {', '.join(EMBEDDERS)}")
        if self.budget < 1:
            raise ReverieError(f"the budget must be at least 1 gradient step, got {self.budget}")
        if self.hidden < 1 or self.batch_size < 1 or not 0.0 <= self.dropout < 1.0:
            raise ReverieError("hidden and batch_size must be >= 1, dropout in [0, 1)")


class HeadlineRun:
    """One training run of a classifier (AdamW, cross-entropy, fixed batch size), `budget` steps long."""

    def __init__(self, config: HeadlineConfig, seed: int, home: str | Path | None = None, splits: Splits | None = None):
        import torch

        if splits is None:
            from reverie.config import get_settings

            splits = load_splits(str(home or get_settings().home), config.dataset, config.embedder)
        self.config, self.seed, self.budget, self.steps = config, int(seed), config.budget, 0
        self._torch = torch
        self._rng = np.random.default_rng(seed)
        torch.manual_seed(seed)
        self.model = CLASSIFIERS[config.model](splits.dim, len(splits.classes), config.hidden, config.dropout)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0)
        self._splits = splits
        self._x = [torch.from_numpy(np.ascontiguousarray(a)) for a in splits.x]
        self._y = [torch.from_numpy(np.ascontiguousarray(a)) for a in splits.y]
        self._subset: np.ndarray | None = None
        if config.train_subset is not None and config.train_subset < len(splits.y[0]):
            self._use_subset(
                np.sort(
                    np.random.default_rng([seed, 7919]).choice(len(splits.y[0]), config.train_subset, replace=False)
                )
            )
        self._order = np.zeros(0, np.int64)
        self._torch_rng = torch.get_rng_state()  # dropout draws from torch's global generator: this run keeps its own

    @property
    def epochs(self) -> float:
        return self.budget * self.config.batch_size / len(self._y[0])

    def _use_subset(self, keep: np.ndarray) -> None:
        self._subset = keep
        self._x[0] = self._torch.from_numpy(np.ascontiguousarray(self._splits.x[0][keep]))
        self._y[0] = self._torch.from_numpy(np.ascontiguousarray(self._splits.y[0][keep]))

    def _batch(self):
        if len(self._order) < self.config.batch_size:  # a new epoch in a new order
            self._order = np.concatenate([self._order, self._rng.permutation(len(self._y[0]))])
        take, self._order = self._order[: self.config.batch_size], self._order[self.config.batch_size :]
        return self._x[0][take], self._y[0][take]

    def advance(self, steps: int, lr: Callable[[int], float], weight_decay: float) -> TrainingReport:
        torch = self._torch
        loss_fn = torch.nn.functional.cross_entropy
        steps = min(int(steps), self.budget - self.steps)
        losses, hits, seen, norms = 0.0, 0, 0, 0.0
        self.model.train()
        caller_rng = torch.get_rng_state()
        torch.set_rng_state(self._torch_rng)
        for _ in range(steps):
            for group in self.optimizer.param_groups:
                group["lr"], group["weight_decay"] = float(lr(self.steps)), float(weight_decay)
            x, y = self._batch()
            logits = self.model(x)
            loss = loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norms += float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf")))
            self.optimizer.step()
            losses += float(loss.detach()) * len(y)
            hits += int((logits.argmax(1) == y).sum())
            seen += len(y)
            self.steps += 1
        self._torch_rng = torch.get_rng_state()
        torch.set_rng_state(caller_rng)
        val_loss, val_acc = self.evaluate(1)
        if seen == 0:
            train_loss, train_acc = self.evaluate(0)
            return TrainingReport(self.steps, train_loss, train_acc, val_loss, val_acc, 0.0)
        return TrainingReport(self.steps, losses / seen, hits / seen, val_loss, val_acc, norms / max(steps, 1))

    def report(self) -> TrainingReport:
        train_loss, train_acc = self.evaluate(0, limit=4096)
        val_loss, val_acc = self.evaluate(1)
        return TrainingReport(self.steps, train_loss, train_acc, val_loss, val_acc, 0.0)

    def evaluate(self, part: int, limit: int | None = None) -> tuple[float, float]:
        """(mean cross-entropy, accuracy) on split `part` (0 train, 1 val, 2 test)."""
        torch = self._torch
        x, y = self._x[part][:limit], self._y[part][:limit]
        self.model.eval()
        with torch.inference_mode():
            logits = torch.cat([self.model(x[i : i + 4096]) for i in range(0, len(y), 4096)])
            return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())

    def test_score(self) -> float:
        return self.evaluate(2)[1]

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies, so training on does not change it)."""
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "steps": self.steps,
            "rng": self._rng.bit_generator.state,
            "order": self._order.copy(),
            "torch_rng": self._torch_rng.clone(),
            "subset": None if self._subset is None else self._subset.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self._rng.bit_generator.state = state["rng"]
        self._order = np.asarray(state["order"], np.int64)
        self._torch_rng = state["torch_rng"].clone()
        if state["subset"] is not None:
            self._use_subset(np.asarray(state["subset"], np.int64))
