"""The conversational memory: a GRU over a conversation's turns that resolves what a follow-up is
about (seed 000's LSTM memory, given a job that can be measured).

A follow-up leans on the conversation: "And if you heat it?" (the same subject), "What about a
rubber ball?" (a new subject, the last relation), "And what is that used for?" (the last answer as
the subject), or it switches topic. The memory reads the turns so far (each turn's words, its
subject and its answer, as MiniLM vectors) with a GRU, and the new message, and then

- points at the subject among the candidates: the entities the message's words link to (by name
  or by vector), the last subject, the last answer and earlier subjects, each with its roles;
- says whether the message asks the last relation without naming one ("What about X?").

The pipeline then poses the follow-up as a self-contained question (`reverie.answer.posed_question`):
the referring words replaced by the subject's name, or the last question asked again of the new
subject. Trained on generated conversations (reverie.data.conversations) by cross-entropy on the
pointer and the carry flag; `reverie train memory` trains one into a home, and a model trained the
same way ships with Reverie (reverie/models/weights/), so follow-ups are resolved out of the box.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reverie.atomic import replace_folder
from reverie.errors import ReverieError

ROLES: tuple[str, ...] = ("exact", "vector", "last-subject", "last-answer", "earlier")
"""Why an entity is a candidate subject: named in the message, near it by vector, or from the conversation."""
CUE_WORDS: tuple[str, ...] = (
    "it",
    "this",
    "that",
    "one",
    "same",
    "result",
    "answer",
    "about",
    "for",
    "then",
    "instead",
    "and",
    "now",
    "what",
    "how",
    "which",
    "where",
    "tell",
    "name",
    "different",
    "another",
    "changing",
    "subject",
    "thing",
)
"""Closed-class and discourse words, as a multi-hot beside the message's vector: a sentence vector
blurs the one word ("it" or "that") that says which entity a follow-up leans on."""
HISTORY_TURNS = 4
"""Turns the GRU reads back: the follow-ups of a 5-turn conversation look back at most four."""
SHIPPED = Path(__file__).parent / "weights" / "conversation_memory"
"""The memory Reverie ships, trained by `reverie train memory` with its defaults."""

Encode = Callable[[list[str]], np.ndarray]


_STOP = frozenset("a an the is are be of to in on at by with what which who does do did if you i me it its".split())


def stems(text: str) -> list[str]:
    """The text's words, crudely singular ("tiles" and "tile" alike)."""
    import re

    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def message_features(text: str, candidates: Sequence[MemoryCandidate]) -> np.ndarray:
    """What the memory reads of the message's words beside its vector: which CUE_WORDS it uses (a
    sentence vector blurs the one word, "it" or "that", that says which entity a follow-up leans
    on), and how many of its words neither name a candidate nor are cue words (none: it asks no
    relation of its own, as "A rubber ball, then?")."""
    from reverie.encoders.text import display

    words = stems(text)
    named: set[str] = set()
    for c in candidates:
        if c.roles & {"exact", "vector"} and c.cover(words) == 1.0:
            named |= set(stems(display(c.name)))
    cues = set(words)
    left = [w for w in words if w not in named and w not in _STOP and w not in CUE_WORDS]
    return np.array(
        [float(w in cues) for w in CUE_WORDS] + [float(len(left) == 0), float(len(left) == 1), float(len(left) >= 2)],
        np.float32,
    )


MESSAGE_FEATURES = len(CUE_WORDS) + 3
CANDIDATE_FEATURES = len(ROLES) + 5


class MemoryLoadError(ReverieError):
    """A conversational memory that cannot be loaded."""


@dataclass(frozen=True)
class MemoryShape:
    dim: int = 384
    """Width of the text vectors (MiniLM)."""
    width: int = 128
    """Width of the GRU and of the pointer's hidden layer."""


@dataclass(frozen=True)
class MemoryCandidate:
    """An entity the follow-up may be about, and why."""

    name: str
    roles: frozenset[str]
    score: float = 1.0
    """Its link score for the message's words (1.0 for an exact name or a remembered entity)."""
    facts: int = 0
    """How many facts the graph holds with it as the subject: an entity with none cannot be asked about."""

    def cover(self, words: Sequence[str]) -> float:
        """The share of its name's words the message uses."""
        from reverie.encoders.text import display

        own = stems(display(self.name))
        return sum(w in words for w in own) / len(own) if own else 0.0

    def features(self, words: Sequence[str]) -> list[float]:
        """Its roles, its link score, the share of its name the message says, how long a name that
        is (a fully said longer name, "ceramic tiles", beats the shorter one inside it), and whether
        the graph holds facts about it, and how many."""
        from reverie.encoders.text import display

        cover = self.cover(words)
        return [float(r in self.roles) for r in ROLES] + [
            self.score,
            cover,
            cover * min(len(stems(display(self.name))), 4) / 4,
            float(self.facts == 0),
            min(float(np.log1p(self.facts) / np.log1p(64)), 1.0),
        ]


@dataclass(frozen=True)
class RememberedTurn:
    """What the memory reads of a past turn."""

    text: str
    subject: str
    answer: str
    """"" when the graph did not say."""


@dataclass(frozen=True)
class Resolution:
    subject: str
    carries_relation: bool
    subject_probability: float
    carry_probability: float
    candidates: tuple[MemoryCandidate, ...] = field(default=())


def memory_candidates(
    linked: Sequence[tuple[str, str, float]],
    history: Sequence[RememberedTurn],
    facts_about: Callable[[list[str]], list[int]],
) -> list[MemoryCandidate]:
    """The candidate subjects of a follow-up: the message's linked entities ((name, how, score),
    how "exact" or "vector"), the last subject, the last answer and the subjects before, each once
    with every role it has, and how many facts the graph holds about it (`facts_about`)."""
    roles: dict[str, set[str]] = {}
    scores: dict[str, float] = {}

    def add(name: str, role: str, score: float = 1.0) -> None:
        if not name:
            return
        roles.setdefault(name, set()).add(role)
        scores[name] = max(scores.get(name, 0.0), score)

    for name, how, score in linked:
        add(name, "exact" if how == "exact" else "vector", score if how != "exact" else 1.0)
    if history:
        add(history[-1].subject, "last-subject")
        add(history[-1].answer, "last-answer")
        for turn in history[-HISTORY_TURNS:-1]:
            add(turn.subject, "earlier")
    names = list(roles)
    counts = facts_about(names) if names else []
    return [MemoryCandidate(n, frozenset(roles[n]), scores[n], c) for n, c in zip(names, counts, strict=True)]


class ConversationMemory(nn.Module):
    def __init__(self, shape: MemoryShape = MemoryShape()):
        super().__init__()
        self.shape = shape
        d, w = shape.dim, shape.width
        self.turn_in = nn.Linear(3 * d, w)
        self.gru = nn.GRU(w, w, batch_first=True)
        self.question_in = nn.Linear(d + MESSAGE_FEATURES, w)
        self.entity_in = nn.Linear(d, w)
        self.role_in = nn.Linear(CANDIDATE_FEATURES, w)
        self.state_in = nn.Linear(w, w)
        self.pointer = nn.Sequential(nn.Tanh(), nn.Linear(w, 1))
        self.carry = nn.Sequential(nn.Linear(2 * w, w), nn.Tanh(), nn.Linear(w, 1))

    def state(self, turns: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The GRU's state after each conversation's turns: (B, H, 3d) left-aligned, `lengths` ≥ 1."""
        packed = nn.utils.rnn.pack_padded_sequence(
            torch.tanh(self.turn_in(turns)), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return last[0]

    def forward(
        self,
        turns: torch.Tensor,
        lengths: torch.Tensor,
        question: torch.Tensor,
        entities: torch.Tensor,
        roles: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(subject logits (B, C), masked to -inf where there is no candidate; carry logits (B,))."""
        h = self.state(turns, lengths)
        q = self.question_in(question)
        joint = self.state_in(h)[:, None] + q[:, None] + self.entity_in(entities) + self.role_in(roles)
        logits = self.pointer(joint).squeeze(-1).masked_fill(~mask, float("-inf"))
        carry = self.carry(torch.cat([h, q], dim=-1)).squeeze(-1)
        return logits, carry

    @torch.no_grad()
    def resolve(
        self,
        question: str,
        question_vec: np.ndarray,
        history_vecs: np.ndarray,
        candidates: Sequence[MemoryCandidate],
        candidate_vecs: np.ndarray,
    ) -> Resolution:
        """The follow-up's subject and whether it carries the last relation. `history_vecs`:
        (turns, 3, d) of each past turn's words, subject and answer (zeros for no answer)."""
        if not candidates:
            raise ValueError("a follow-up needs at least one candidate subject")
        self.eval()
        turns = torch.as_tensor(np.asarray(history_vecs, np.float32)[-HISTORY_TURNS:]).reshape(
            1, -1, 3 * self.shape.dim
        )
        logits, carry = self(
            turns,
            torch.tensor([turns.shape[1]]),
            torch.as_tensor(np.concatenate([question_vec, message_features(question, candidates)]).astype(np.float32))[
                None
            ],
            torch.as_tensor(np.asarray(candidate_vecs, np.float32))[None],
            torch.tensor([[c.features(stems(question)) for c in candidates]], dtype=torch.float32),
            torch.ones(1, len(candidates), dtype=torch.bool),
        )
        probs = torch.softmax(logits[0], dim=0)
        best = int(probs.argmax())
        p_carry = float(torch.sigmoid(carry[0]))
        return Resolution(candidates[best].name, p_carry >= 0.5, float(probs[best]), p_carry, tuple(candidates))


# ------------------------------------------------------------------------------ examples


@dataclass
class MemoryExamples:
    """Follow-ups as tensors: history (N, H, 3d), lengths (N,), question (N, d), candidates (N, C, d),
    roles (N, C, R+1), mask (N, C), subject index (N,), carry (N,), and each one's kind."""

    turns: torch.Tensor
    lengths: torch.Tensor
    question: torch.Tensor
    entities: torch.Tensor
    roles: torch.Tensor
    mask: torch.Tensor
    subject: torch.Tensor
    carry: torch.Tensor
    kinds: list[str]
    missed: dict[str, int]
    """Follow-ups left out because their subject was not among the candidates, by kind."""

    def __len__(self) -> int:
        return len(self.kinds)

    def take(self, idx: torch.Tensor) -> MemoryExamples:
        return MemoryExamples(
            self.turns[idx],
            self.lengths[idx],
            self.question[idx],
            self.entities[idx],
            self.roles[idx],
            self.mask[idx],
            self.subject[idx],
            self.carry[idx],
            [self.kinds[int(i)] for i in idx],
            {},
        )


class VectorCache:
    """MiniLM vectors of texts, each encoded once."""

    def __init__(self, encode: Encode):
        self.encode = encode
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            for text, vec in zip(missing, self.encode(missing), strict=True):
                self.vectors[text] = np.asarray(vec, np.float32)
        dim = next(iter(self.vectors.values())).shape[0] if self.vectors else 0
        return np.stack([self.vectors[t] if t else np.zeros(dim, np.float32) for t in texts])


def entity_vectors(cache: VectorCache, names: Sequence[str]) -> np.ndarray:
    """An entity's vector for the memory: its readable name encoded ("" gives zeros)."""
    from reverie.encoders.text import display

    return cache([display(n) if n else "" for n in names])


class NameLinker:
    """The graph store's linking (`GraphStore.link`: exact names, then the nearest by vector above
    a score), over one graph's entity names, for making training examples without a store."""

    def __init__(self, names: Sequence[str], cache: VectorCache, top_k: int = 5, min_score: float = 0.45):
        from reverie.encoders.text import display
        from reverie.graph_store.store import normalise

        self.names = list(names)
        self.phrases: dict[str, list[str]] = {}
        for name in self.names:
            self.phrases.setdefault(normalise(display(name)), []).append(name)
        self.vectors = entity_vectors(cache, self.names)
        self.cache, self.top_k, self.min_score = cache, top_k, min_score
        self.head_counts: dict[str, int] = {}

    def facts_about(self, names: list[str]) -> list[int]:
        return [self.head_counts.get(n, 0) for n in names]

    def link(self, text: str) -> list[tuple[str, str, float]]:
        from reverie.graph_store.store import normalise

        words = normalise(text).split()
        taken = [False] * len(words)
        linked: dict[str, tuple[str, str, float]] = {}
        for size in range(min(8, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                if any(taken[start : start + size]):
                    continue
                for name in self.phrases.get(" ".join(words[start : start + size]), []):
                    linked.setdefault(name, (name, "exact", 1.0))
                    taken[start : start + size] = [True] * size
        sims = self.vectors @ self.cache([text])[0]
        for i in np.argsort(-sims)[: self.top_k]:
            if sims[i] >= self.min_score and self.names[i] not in linked:
                linked[self.names[i]] = (self.names[i], "vector", float(sims[i]))
        return list(linked.values())


def follow_up_examples(conversations, linkers: dict[str, NameLinker], cache: VectorCache) -> MemoryExamples:
    """Every follow-up of the conversations as an example, with the gold history (each past turn's
    words, subject and the answer the conversation went on from)."""
    rows = []
    missed: dict[str, int] = {}
    cache([t.text for conv in conversations for t in conv.turns])  # one batched encoding, not one call a text
    for conv in conversations:
        linker = linkers[conv.graph]
        for t in range(1, len(conv.turns)):
            turn = conv.turns[t]
            history = [RememberedTurn(p.text, p.subject, p.said) for p in conv.turns[:t]][-HISTORY_TURNS:]
            candidates = memory_candidates(linker.link(turn.text), history, linker.facts_about)
            names = [c.name for c in candidates]
            if turn.subject not in names:
                missed[turn.kind] = missed.get(turn.kind, 0) + 1
                continue
            rows.append((turn, history, candidates, names.index(turn.subject)))
    if not rows:
        raise ReverieError("no follow-up had its subject among its candidates")
    d = cache(["x"]).shape[1]
    n, c_max = len(rows), max(len(r[2]) for r in rows)
    turns = np.zeros((n, HISTORY_TURNS, 3 * d), np.float32)
    entities = np.zeros((n, c_max, d), np.float32)
    roles = np.zeros((n, c_max, CANDIDATE_FEATURES), np.float32)
    mask = np.zeros((n, c_max), bool)
    for i, (_turn, history, candidates, _) in enumerate(rows):
        turns[i, : len(history)] = history_matrix(cache, history).reshape(len(history), -1)
        entities[i, : len(candidates)] = entity_vectors(cache, [c.name for c in candidates])
        roles[i, : len(candidates)] = [c.features(stems(_turn.text)) for c in candidates]
        mask[i, : len(candidates)] = True
    return MemoryExamples(
        torch.as_tensor(turns),
        torch.tensor([len(r[1]) for r in rows]),
        torch.as_tensor(
            np.stack(
                [
                    np.concatenate([v, message_features(r[0].text, r[2])])
                    for r, v in zip(rows, cache([r[0].text for r in rows]), strict=True)
                ]
            )
        ),
        torch.as_tensor(entities),
        torch.as_tensor(roles),
        torch.as_tensor(mask),
        torch.tensor([r[3] for r in rows]),
        torch.tensor([float(r[0].carries_relation) for r in rows]),
        [r[0].kind for r in rows],
        missed,
    )


def history_matrix(cache: VectorCache, history: Sequence[RememberedTurn]) -> np.ndarray:
    """(turns, 3, d): each past turn's words, subject and answer."""
    words = cache([t.text for t in history])
    subjects = entity_vectors(cache, [t.subject for t in history])
    answers = entity_vectors(cache, [t.answer for t in history])
    return np.stack([words, subjects, answers], axis=1)


# ------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class MemoryTraining:
    conversations_per_graph: int = 1500
    """Generated train conversations of each graph (each has four follow-ups)."""
    graphs: tuple[str, ...] = ("world", "umls", "kinships")
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass
class MemoryReport:
    examples: int
    missed: dict[str, int]
    seconds: float
    train_accuracy: float
    losses: list[float]


def train_memory(
    encode: Encode, training: MemoryTraining = MemoryTraining(), progress: bool = False
) -> tuple[ConversationMemory, MemoryReport]:
    """A memory trained on generated train-split conversations of the graphs."""
    from tqdm import tqdm

    from reverie.data.conversations import conversation_graph, conversations

    start = time.perf_counter()
    torch.manual_seed(training.seed)
    cache = VectorCache(encode)
    convs, linkers = [], {}
    for name in training.graphs:
        graph = conversation_graph(name)
        convs += conversations(graph, "train", training.conversations_per_graph, training.seed)
        linkers[graph.name] = graph_linker(graph, cache)
    examples = follow_up_examples(convs, linkers, cache)
    model = ConversationMemory(MemoryShape(dim=examples.question.shape[1] - MESSAGE_FEATURES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=1e-4)
    losses = []
    bar = tqdm(range(training.epochs), desc="memory", unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        order = torch.randperm(len(examples))
        total = 0.0
        for i in range(0, len(order), training.batch_size):
            b = examples.take(order[i : i + training.batch_size])
            logits, carry = model(b.turns, b.lengths, b.question, b.entities, b.roles, b.mask)
            loss = nn.functional.cross_entropy(logits, b.subject) + nn.functional.binary_cross_entropy_with_logits(
                carry, b.carry
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / len(examples))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    accuracy = memory_accuracy(model, examples)["all"]
    return model, MemoryReport(len(examples), examples.missed, time.perf_counter() - start, accuracy, losses)


def graph_linker(graph, cache: VectorCache) -> NameLinker:
    """A NameLinker over a conversation graph's entities, knowing how many facts each heads."""
    linker = NameLinker(
        sorted({s for s, _ in graph.tails} | {t for tails in graph.tails.values() for t in tails}), cache
    )
    for (head, _), tails in graph.tails.items():
        linker.head_counts[head] = linker.head_counts.get(head, 0) + len(tails)
    return linker


@torch.no_grad()
def memory_accuracy(model: ConversationMemory, examples: MemoryExamples) -> dict[str, float]:
    """The share of follow-ups whose subject and relation carry are both right, by kind and in all."""
    model.eval()
    logits, carry = model(
        examples.turns, examples.lengths, examples.question, examples.entities, examples.roles, examples.mask
    )
    right = (logits.argmax(1) == examples.subject) & ((carry > 0).float() == examples.carry)
    out = {"all": float(right.float().mean())}
    for kind in sorted(set(examples.kinds)):
        idx = [i for i, k in enumerate(examples.kinds) if k == kind]
        out[kind] = float(right[idx].float().mean())
    return out


# ------------------------------------------------------------------------------ files


def save_memory(model: ConversationMemory, folder: Path, card: dict | None = None) -> None:
    """The weights (safetensors) and a JSON card, written into a staging folder and renamed into place."""
    import shutil

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staging / "memory.safetensors"))
    (staging / "memory.json").write_text(json.dumps({"shape": asdict(model.shape), **(card or {})}, indent=2))
    replace_folder(staging, folder)


def load_memory(folder: Path) -> ConversationMemory:
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        card = json.loads((folder / "memory.json").read_text())
        model = ConversationMemory(MemoryShape(**card["shape"]))
        model.load_state_dict(load_file(str(folder / "memory.safetensors")))
    except FileNotFoundError as exc:
        raise MemoryLoadError(f"no conversational memory in {folder}: train one with `reverie train memory`") from exc
    except Exception as exc:  # noqa: BLE001 - whatever the damage (safetensors raises its own errors), one clear line
        raise MemoryLoadError(
            f"the conversational memory in {folder} is damaged ({exc}): train it again with `reverie train memory`"
        ) from exc
    model.eval()
    return model


def read_card(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "memory.json").read_text())
    except (OSError, ValueError):
        return {}
