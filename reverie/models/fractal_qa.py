"""Question answering with the fractal network, and the baselines it is measured against (issue 28).

A `QAModel` is a *core* that turns a question into a vector, and a word-level GRU decoder that
writes the answer from that vector. Cores, by name (`QA_CORES`, one contract test runs on each):

- "fractal": the question's MiniLM vector -> `FractalNet` (VAE latent, growing tree);
- "mlp": the question's MiniLM vector -> a two-layer perceptron;
- "lstm": the question's words -> an LSTM (a classic sequence-to-sequence encoder).

The decoder, the vocabulary and the training are the same for all three, so a comparison at equal
core weights (`core_weights`) compares the cores. The vocabulary holds the words of the training
questions and answers: a reply can only be made of words the model was taught.

The MiniLM vectors come from the caller (`encode`: a list of texts -> an array of vectors), so this
module imports no encoder. State files (`save_qa` / `load_qa`): one safetensors file, written
atomically, its card (core, settings, the fractal's tree, vocabulary, training history) in the
file's metadata.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from reverie.atomic import atomic_write
from reverie.models.fractal import (
    FractalConfig,
    FractalNet,
    FractalStateError,
    GrowthEvent,
    build_from_shape,
    config_from,
    rebuild_optimizer,
)

Encode = Callable[[list[str]], np.ndarray]
PAD, START, END, UNKNOWN = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, START, END, UNKNOWN)
QA_FORMAT = "reverie-fractal-qa/1"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]", re.IGNORECASE)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def join_words(tokens: Sequence[str]) -> str:
    text = " ".join(tokens)
    return re.sub(r" ([.,!?;:'])", r"\1", text)


@dataclass
class Vocabulary:
    tokens: list[str]

    def __post_init__(self):
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Sequence[str], limit: int = 8000) -> Vocabulary:
        counts: dict[str, int] = {}
        for text in texts:
            for w in words(text):
                counts[w] = counts.get(w, 0) + 1
        ranked = sorted(counts, key=lambda w: (-counts[w], w))[: limit - len(SPECIALS)]
        return cls([*SPECIALS, *ranked])

    def ids(self, text: str) -> list[int]:
        unknown = self.index[UNKNOWN]
        return [self.index.get(w, unknown) for w in words(text)]

    def __len__(self) -> int:
        return len(self.tokens)


# ------------------------------------------------------------------------------------ cores


@dataclass
class QASettings:
    """The shape of a QAModel: its core and decoder."""

    core: str = "fractal"
    """A key of QA_CORES."""
    width: int = 64
    """The width of the core's output, the decoder's state and its word vectors."""
    mlp_hidden: int = 256
    """The MLP core's hidden width."""
    lstm_hidden: int = 64
    """The LSTM core's hidden width (its word vectors are `width` wide)."""
    fractal: dict[str, Any] = field(default_factory=dict)
    """FractalConfig fields for the fractal core (input_dim and output_dim are set here)."""


class QACore(nn.Module):
    """What every core does: (question vectors, question word ids) -> (state, extra loss)."""

    name = ""
    reads = "vectors"
    """What it reads of a question: "vectors" (MiniLM) or "tokens" (word ids)."""

    def after_step(self) -> list[GrowthEvent]:
        """Called after each optimiser step; returns the structural changes it made (none, but the fractal's)."""
        return []


class FractalCore(QACore):
    """MiniLM vector -> FractalNet; its KL enters the loss, its tree grows and prunes."""

    name = "fractal"
    reads = "vectors"

    def __init__(self, vector_dim: int, vocab: int, settings: QASettings):
        super().__init__()
        config = FractalConfig(input_dim=vector_dim, output_dim=settings.width, **settings.fractal)
        self.net = FractalNet(config)

    def forward(self, vectors: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, kl = self.net(vectors)
        return out, self.net.config.vae_beta * kl.mean()

    def after_step(self) -> list[GrowthEvent]:
        return self.net.after_step()


class MLPCore(QACore):
    name = "mlp"
    reads = "vectors"

    def __init__(self, vector_dim: int, vocab: int, settings: QASettings):
        super().__init__()
        hidden = settings.mlp_hidden
        # the input norm: MiniLM vectors have unit length, so each float is small (the fractal
        # core's nodes normalise too)
        self.net = nn.Sequential(
            nn.LayerNorm(vector_dim),
            nn.Linear(vector_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, settings.width),
        )

    def forward(self, vectors: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(vectors), torch.zeros((), device=vectors.device)


class LSTMCore(QACore):
    name = "lstm"
    reads = "tokens"

    def __init__(self, vector_dim: int, vocab: int, settings: QASettings):
        super().__init__()
        self.embed = nn.Embedding(vocab, settings.width, padding_idx=0)
        self.lstm = nn.LSTM(settings.width, settings.lstm_hidden, batch_first=True)
        self.out = nn.Linear(settings.lstm_hidden, settings.width)

    def forward(self, vectors: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = (tokens != 0).sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return self.out(hidden[-1]), torch.zeros((), device=tokens.device)


QA_CORES: dict[str, type[QACore]] = {core.name: core for core in (FractalCore, MLPCore, LSTMCore)}
"""Question cores by name; tests/test_fractal.py runs one contract over each."""


class QAModel(nn.Module):
    def __init__(self, vocabulary: Vocabulary, settings: QASettings, vector_dim: int = 384):
        super().__init__()
        if settings.core not in QA_CORES:
            raise ValueError(f"unknown core {settings.core!r}: choose one of {', '.join(QA_CORES)}")
        self.vocabulary, self.settings, self.vector_dim = vocabulary, settings, vector_dim
        self.core: QACore = QA_CORES[settings.core](vector_dim, len(vocabulary), settings)
        width = settings.width
        self.embed = nn.Embedding(len(vocabulary), width, padding_idx=0)
        self.decoder = nn.GRU(width, width, batch_first=True)
        self.readout = nn.Linear(width, len(vocabulary))
        self.history: list[dict[str, Any]] = []

    @property
    def fractal(self) -> FractalNet | None:
        return self.core.net if isinstance(self.core, FractalCore) else None

    def core_weights(self) -> int:
        return sum(p.numel() for p in self.core.parameters())

    def weights(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _question_tokens(self, questions: Sequence[str]) -> torch.Tensor:
        rows = [self.vocabulary.ids(q)[:48] or [self.vocabulary.index[UNKNOWN]] for q in questions]
        out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, row in enumerate(rows):
            out[i, : len(row)] = torch.tensor(row)
        return out

    def loss(self, vectors: torch.Tensor, questions: Sequence[str], answers: Sequence[str]) -> torch.Tensor:
        state, extra = self.core(vectors, self._question_tokens(questions))
        start, end = self.vocabulary.index[START], self.vocabulary.index[END]
        rows = [[start, *self.vocabulary.ids(a)[:30], end] for a in answers]
        length = max(len(r) for r in rows)
        target = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            target[i, : len(row)] = torch.tensor(row)
        inputs, expected = target[:, :-1], target[:, 1:]
        out, _ = self.decoder(self.embed(inputs), torch.tanh(state).unsqueeze(0).contiguous())
        logits = self.readout(out)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), expected.reshape(-1), ignore_index=0) + extra

    @torch.no_grad()
    def answer(
        self,
        vectors: torch.Tensor,
        questions: Sequence[str],
        temperature: float = 0.0,
        seed: int | None = None,
        max_words: int = 24,
    ) -> list[str]:
        """Replies, greedy at temperature 0, else sampled (seeded when `seed` is given)."""
        was_training = self.training
        self.eval()
        try:
            state, _ = self.core(vectors, self._question_tokens(questions))
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            hidden = torch.tanh(state).unsqueeze(0).contiguous()
            token = torch.full((len(questions), 1), self.vocabulary.index[START], dtype=torch.long)
            end = self.vocabulary.index[END]
            done = torch.zeros(len(questions), dtype=torch.bool)
            said: list[list[int]] = [[] for _ in questions]
            banned = torch.tensor([self.vocabulary.index[t] for t in (PAD, START, UNKNOWN)])
            for position in range(max_words):
                out, hidden = self.decoder(self.embed(token), hidden)
                logits = self.readout(out[:, -1])
                logits[:, banned] = -math.inf
                if position == 0:
                    logits[:, end] = -math.inf  # a reply says at least one word
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    nxt = logits.argmax(dim=-1)
                for i, t in enumerate(nxt.tolist()):
                    if not done[i] and t != end:
                        said[i].append(t)
                done |= nxt == end
                if bool(done.all()):
                    break
                token = nxt.unsqueeze(1)
            return [join_words([self.vocabulary.tokens[t] for t in row]) for row in said]
        finally:
            self.train(was_training)


# --------------------------------------------------------------------------------- training


@dataclass
class QATraining:
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 3e-3
    seed: int = 0


def new_model(
    pairs: Sequence[Any], settings: QASettings, vector_dim: int = 384, extra_texts: Sequence[str] = ()
) -> QAModel:
    vocabulary = Vocabulary.build([t for p in pairs for t in (p.question, p.answer)] + list(extra_texts))
    return QAModel(vocabulary, settings, vector_dim)


def train_qa(
    model: QAModel,
    pairs: Sequence[Any],
    vectors: np.ndarray,
    training: QATraining,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """Fit the model on `pairs` (objects with .question and .answer) whose question vectors are
    `vectors`; returns (and appends to model.history) one point per epoch."""
    if not len(pairs):
        raise ValueError("no Q&A pairs to train on")
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    questions = [p.question for p in pairs]
    answers = [p.answer for p in pairs]
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate)
    model.train()
    if model.fractal is not None:
        model.fractal.set_recording(True)
    points = []
    started = time.perf_counter()
    try:
        for epoch in range(1, training.epochs + 1):
            order = rng.permutation(len(pairs))
            total, batches, events = 0.0, 0, 0
            for at in range(0, len(order), training.batch_size):
                batch = order[at : at + training.batch_size]
                loss = model.loss(x[batch], [questions[i] for i in batch], [answers[i] for i in batch])
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss is {loss.item()} at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                changed = model.core.after_step()
                if changed:
                    events += len(changed)
                    optimizer = rebuild_optimizer(optimizer, list(model.parameters()))
                total += float(loss.detach())
                batches += 1
            point: dict[str, Any] = {
                "epoch": epoch,
                "loss": total / max(batches, 1),
                "seconds": time.perf_counter() - started,
            }
            if model.fractal is not None:
                stats = model.fractal.stats()
                point.update(
                    nodes=stats.nodes,
                    depth=stats.depth,
                    complexity=stats.complexity,
                    weights=model.weights(),
                    changes=events,
                )
            points.append(point)
            model.history.append(point)
            if progress is not None:
                progress(point)
            if should_stop is not None and should_stop():
                break
    finally:
        if model.fractal is not None:
            model.fractal.set_recording(False)
        model.eval()
    return points


# ---------------------------------------------------------------------------------- state


def save_qa(model: QAModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """The model as one safetensors file, written to a temporary file and renamed over `path`."""
    from safetensors.torch import save

    card: dict[str, Any] = {
        "format": QA_FORMAT,
        "settings": asdict(model.settings),
        "vector_dim": model.vector_dim,
        "vocabulary": model.vocabulary.tokens,
        "history": model.history,
        **(extra or {}),
    }
    if model.fractal is not None:
        card["fractal"] = model.fractal.card()
    tensors = {name: t.detach().contiguous().clone() for name, t in model.state_dict().items()}
    return atomic_write(path, save(tensors, metadata={"card": json.dumps(card)}))


def read_card(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FractalStateError(f"no fractal state at {path}: save one with `reverie fractal save {path}`")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise FractalStateError(f"{path} is not a fractal state file (damaged or another format: {error})") from error
    if not metadata or "card" not in metadata:
        raise FractalStateError(f"{path} is a safetensors file but not a fractal state (no card)")
    try:
        card = json.loads(metadata["card"])
    except json.JSONDecodeError as error:
        raise FractalStateError(f"{path}: its card is not JSON ({error})") from error
    if card.get("format") != QA_FORMAT:
        raise FractalStateError(f"{path} is not a {QA_FORMAT} state (format {card.get('format')!r})")
    return card


def load_qa(path: str | Path) -> QAModel:
    """A model saved by save_qa; FractalStateError (a clear message) for anything else."""
    from safetensors.torch import load_file

    path = Path(path)
    card = read_card(path)
    try:
        settings = QASettings(**card["settings"])
        model = QAModel(Vocabulary(list(card["vocabulary"])), settings, int(card["vector_dim"]))
        if model.fractal is not None:
            fractal = card["fractal"]
            config = config_from(fractal["config"])
            net = build_from_shape(config, {k: int(v) for k, v in fractal["tree"].items()})
            net.step = int(fractal.get("step", 0))
            cast(FractalCore, model.core).net = net
        tensors = load_file(str(path))
        model.load_state_dict(tensors, strict=True)
    except FractalStateError:
        raise
    except Exception as error:
        raise FractalStateError(f"{path}: the state does not fit its own card ({error})") from error
    model.history = list(card.get("history", []))
    model.eval()
    return model
