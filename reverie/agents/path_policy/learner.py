"""The path policy learns from use, without Ray: the computing core of `reverie learn`.

`PolicyLearner` holds a trained `PathPolicyNet`, the `WalkGraph` it walks and the facts it may
reward, and goes on training it with what use brings:

- **experience** (`add`): queries (source, relation id, answer) with the reward their answer earns,
  from ratings (a good answer earns 1, a rejected one 0, an answer a note names 1) and from facts
  ingested after training (each new fact is a query whose answer earns 1). Experience enters a
  prioritised replay buffer (replay.py), or, with replay off, is used once and forgotten.
- **updates** (`update`): PPO's clipped surrogate on walks the current policy samples for a batch of
  queries (half fresh experience, half replayed by priority with importance weights), with the
  reward = 1 at a confirmed answer, 0 at a rejected one, plus `reward_model_weight` times the
  reward model's centred belief in the walk; minus an EWC penalty (`ElasticAnchor`) that holds the
  weights that mattered for the previous version's queries; plus, while it anneals to zero, the
  cross-entropy to the graph reasoner's paths (`Demonstrations`): the reasoner teaches the policy.
- **new facts** join the walkable graph at once (`grow`): the WalkGraph is rebuilt with them; new
  entities get the (zero, frozen) entity vectors every entity has in MINERVA's setting, new relations
  a row initialised at the mean of the known ones, so nothing else is retrained.

The same pieces give the reasoner's behaviour-cloning warm start (`clone`), which `reverie train
policy --teacher reasoner` runs before PPO.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reverie.agents.path_policy.config import LearnerConfig
from reverie.agents.path_policy.net import PathPolicyNet
from reverie.agents.path_policy.replay import PrioritizedReplay
from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.atomic import atomic_file

# ---------------------------------------------------------------------- walking


@dataclass
class Walks:
    """Walks of `hops` steps for queries: each step's observation batch, the actions and their log-probs."""

    obs: list[dict[str, np.ndarray]]
    actions: np.ndarray  # [N, H] columns
    logp: np.ndarray  # [N, H] log-probs when sampled
    relations: np.ndarray  # [N, H] relation ids taken (NO_OP for a stay)
    ends: np.ndarray  # [N] where each walk ends


def hidden_fact_columns(graph: WalkGraph, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the asked fact (source -> answer) and of its inverse (answer -> source); -1 when absent.
    A walk may not take them, as in training: the answer has to be reached another way."""
    src, rel, ans = queries[:, 0], queries[:, 1], queries[:, 2]
    return graph.columns(src, rel, ans), graph.columns(ans, graph.inverse_relation(rel), src)


def _allowed(graph: WalkGraph, queries: np.ndarray, cur: np.ndarray, hidden: tuple[np.ndarray, np.ndarray]):
    allowed = graph.allowed_actions(cur).copy()
    rows = np.arange(len(cur))
    for at, cols in ((queries[:, 0], hidden[0]), (queries[:, 2], hidden[1])):
        hit = (cur == at) & (cols >= 0)
        allowed[rows[hit], cols[hit]] = False
    return allowed


@torch.no_grad()
def sample_walks(
    net: PathPolicyNet, graph: WalkGraph, queries: np.ndarray, hops: int, generator: torch.Generator
) -> Walks:
    """One sampled walk per query row (source, relation id, answer); the asked fact is hidden."""
    queries = np.asarray(queries, np.int64).reshape(-1, 3)
    n = len(queries)
    src, rel = queries[:, 0], queries[:, 1]
    hidden = hidden_fact_columns(graph, queries)
    cur = src.copy()
    taken = np.full((n, hops), graph.no_op, np.int64)
    ents = np.repeat(src[:, None], hops, axis=1)
    actions, logp, obs_list = np.zeros((n, hops), np.int64), np.zeros((n, hops)), []
    for step in range(hops):
        obs = graph.observation(src, rel, cur, step, taken, ents, _allowed(graph, queries, cur, hidden))
        logits, _ = net({k: torch.as_tensor(v) for k, v in obs.items()})
        log_probs = torch.log_softmax(logits, dim=-1)
        a = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
        obs_list.append(obs)
        actions[:, step] = a.numpy()
        logp[:, step] = log_probs[torch.arange(n), a].double().numpy()
        taken[:, step] = graph.action_relations[cur, actions[:, step]]
        cur = graph.action_entities[cur, actions[:, step]]
        ents[:, step] = cur
    return Walks(obs_list, actions, logp, taken, cur)


def _stack(obs: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.concatenate([o[k] for o in obs])) for k in obs[0]}


# ---------------------------------------------------------------------- the reasoner's paths


@dataclass
class Demonstrations:
    """The graph reasoner's paths to answers, as action columns in the policy's tables, with weights
    (each query's paths share weight 1, split by the reasoner's importance of each): the reasoner's
    path distribution per query. The policy's view along a path is rebuilt when needed (`observations`)."""

    graph: WalkGraph
    queries: np.ndarray  # [M, 3]
    actions: np.ndarray  # [M, H]
    weights: np.ndarray  # [M]

    def __len__(self) -> int:
        return len(self.weights)

    def observations(self, index: np.ndarray) -> list[dict[str, np.ndarray]]:
        return _follow(self.graph, self.queries[index], self.actions[index])

    def save(self, path: str | Path) -> Path:
        with atomic_file(path) as handle:
            np.savez(handle, queries=self.queries, actions=self.actions, weights=self.weights)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, graph: WalkGraph) -> "Demonstrations":
        with np.load(Path(path)) as data:
            return cls(graph, data["queries"], data["actions"], data["weights"])


def demonstrations(
    reasoner: Any,
    graph: WalkGraph,
    queries: np.ndarray,
    hops: int,
    top: int = 3,
    progress: Callable[[int], None] | None = None,
) -> Demonstrations:
    """The reasoner's `top` paths for each query (source, relation id, answer) that a walk of `hops`
    steps can take without the asked fact. `reasoner` is a GraphReasoner over the same names."""
    if list(reasoner.entities) != graph.id2entity or list(reasoner.relations) != graph.id2relation:
        raise ValueError("the reasoner was trained on a different graph than the policy walks")
    src_e, rel_e, dst_e = (x.numpy() for x in reasoner.edges)
    rows: list[int] = []
    cols: list[list[int]] = []
    weights: list[float] = []
    for i, (s, r, a) in enumerate(np.asarray(queries, np.int64).tolist()):
        found: list[tuple[float, list[int]]] = []
        for importance, path in reasoner.paths(s, r, a, top=top + 1):
            if not path or len(path) > hops:
                continue
            edges = [(int(src_e[e]), int(rel_e[e]), int(dst_e[e])) for e in path]
            inv = int(graph.inverse_relation(r))
            if (s, r, a) in edges or (a, inv, s) in edges:
                continue  # the asked fact itself: hidden from walks
            columns = graph.columns(*np.array(edges).T)
            if (columns < 0).any():
                continue  # a move the policy's table left out of a high-degree entity's sample
            found.append((importance, [int(c) for c in columns] + [0] * (hops - len(columns))))
        if found:
            scores = np.array([imp for imp, _ in found[:top]], np.float64)
            share = np.maximum(scores, 0.0)
            share = share / share.sum() if share.sum() > 0 else np.full(len(scores), 1.0 / len(scores))
            for (_, moves), w in zip(found[:top], share):
                rows.append(i)
                cols.append(moves)
                weights.append(w)
        if progress is not None:
            progress(i + 1)
    queries = np.asarray(queries, np.int64).reshape(-1, 3)[np.asarray(rows, np.int64)]
    actions = np.asarray(cols, np.int64).reshape(-1, hops)
    return Demonstrations(graph, queries, actions, np.asarray(weights, np.float64))


def _follow(graph: WalkGraph, queries: np.ndarray, actions: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The observations along fixed action sequences (what the policy sees at each step of a path)."""
    n, hops = actions.shape
    src, rel = queries[:, 0], queries[:, 1]
    hidden = hidden_fact_columns(graph, queries)
    cur = src.copy()
    taken = np.full((n, hops), graph.no_op, np.int64)
    ents = np.repeat(src[:, None], hops, axis=1)
    out = []
    for step in range(hops):
        out.append(graph.observation(src, rel, cur, step, taken, ents, _allowed(graph, queries, cur, hidden)))
        taken[:, step] = graph.action_relations[cur, actions[:, step]]
        cur = graph.action_entities[cur, actions[:, step]]
        ents[:, step] = cur
    return out


def teacher_loss(net: PathPolicyNet, demos: Demonstrations, index: np.ndarray) -> torch.Tensor:
    """Cross-entropy of the policy's walks to the reasoner's path distribution on demonstrations
    `index` (the KL to it, up to the teacher's own entropy)."""
    w = torch.as_tensor(demos.weights[index])
    total = torch.zeros(len(index), dtype=torch.float64)
    for step, obs in enumerate(demos.observations(index)):
        logits, _ = net({k: torch.as_tensor(v) for k, v in obs.items()})
        chosen = torch.as_tensor(demos.actions[index, step])
        total = total + torch.log_softmax(logits, -1)[torch.arange(len(index)), chosen].double()
    return -(w * total).sum() / w.sum().clamp_min(1e-9)


def clone(
    net: PathPolicyNet,
    demos: Demonstrations,
    epochs: int = 5,
    batch: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[float]:
    """Behaviour cloning: fit the policy to the reasoner's paths (the warm start before PPO). Returns
    each epoch's mean loss."""
    if not len(demos):
        raise ValueError("no demonstrations: the reasoner found no path a walk can take")
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    net.train()
    losses = []
    for epoch in range(epochs):
        order, total = rng.permutation(len(demos)), 0.0
        for start in range(0, len(order), batch):
            loss = teacher_loss(net, demos, order[start : start + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(order[start : start + batch])
        losses.append(total / len(order))
        if progress is not None:
            progress({"epoch": epoch + 1, "epochs": epochs, "teacher_loss": losses[-1]})
    net.eval()
    return losses


# ---------------------------------------------------------------------- EWC


@dataclass
class ElasticAnchor:
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017): the weights of the previous version and
    the diagonal Fisher information of its queries. `penalty` = sum F (theta - theta*)^2 / 2."""

    params: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor]

    def penalty(self, net: PathPolicyNet) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in net.named_parameters():
            if name in self.fisher and p.shape == self.params[name].shape:
                total = total + (self.fisher[name] * (p - self.params[name]) ** 2).sum()
        return total / 2

    def grown(self, entities: Sequence[str], relations: Sequence[str], new: WalkGraph) -> "ElasticAnchor":
        """The anchor re-indexed for a grown graph, as `grow_net` re-indexes the net: rows of known names
        keep their anchor and Fisher; new entities' and relations' rows are free (Fisher 0)."""
        e_old = {name: i for i, name in enumerate(entities)}
        r_old = {name: i for i, name in enumerate(relations)}
        R_old, R_new = len(relations), new.num_relations
        ent_rows = [(i, e_old[name]) for name, i in new.entity2id.items() if name in e_old]
        rel_rows = [(i, r_old[name]) for name, i in new.relation2id.items() if name in r_old]
        rel_rows += [(i + R_new, j + R_old) for i, j in rel_rows]
        rel_rows += [(2 * R_new, 2 * R_old), (new.num_relation_ids, 2 * R_old + 1)]  # NO_OP, start token
        sizes = {"entity_emb.weight": new.num_entities, "relation_emb.weight": new.num_relation_ids + 1}
        rows = {"entity_emb.weight": ent_rows, "relation_emb.weight": rel_rows}
        params, fisher = dict(self.params), dict(self.fisher)
        for name, size in sizes.items():
            if name not in self.params:
                continue
            p = torch.zeros(size, self.params[name].shape[1])
            f = torch.zeros_like(p)
            to, at = (torch.as_tensor([r[k] for r in rows[name]], dtype=torch.long) for k in (0, 1))
            p[to], f[to] = self.params[name][at], self.fisher[name][at]
            params[name], fisher[name] = p, f
        return ElasticAnchor(params, fisher)

    def save(self, path: str | Path) -> Path:
        with atomic_file(path) as handle:
            torch.save({"params": self.params, "fisher": self.fisher}, handle)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "ElasticAnchor":
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(data["params"], data["fisher"])


def fisher_anchor(
    net: PathPolicyNet, graph: WalkGraph, queries: np.ndarray, hops: int, seed: int = 0, batch: int = 16
) -> ElasticAnchor:
    """The anchor at `net`'s weights: the empirical Fisher of its own walks on `queries`, as the mean
    squared gradient of small batches' log-likelihood (times the batch size), normalised to mean 1."""
    generator = torch.Generator().manual_seed(seed)
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    queries = np.asarray(queries, np.int64).reshape(-1, 3)
    batches = 0
    for start in range(0, len(queries), batch):
        part = queries[start : start + batch]
        walks = sample_walks(net, graph, part, hops, generator)
        logp = _log_probs(net, walks)
        net.zero_grad()
        logp.sum().div(len(part)).backward()
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2 * len(part)
        batches += 1
    net.zero_grad()
    mean = torch.cat([f.reshape(-1) for f in fisher.values()]).mean().clamp_min(1e-12)
    return ElasticAnchor(
        {n: p.detach().clone() for n, p in params.items()}, {n: f / max(batches, 1) / mean for n, f in fisher.items()}
    )


def _log_probs(net: PathPolicyNet, walks: Walks) -> torch.Tensor:
    """log pi(a_t | s_t) [N, H] of the walks' actions under the net as it is now (with gradients)."""
    n, hops = walks.actions.shape
    logits, _ = net(_stack(walks.obs))
    flat = torch.as_tensor(walks.actions.T.reshape(-1))
    return torch.log_softmax(logits, -1)[torch.arange(n * hops), flat].reshape(hops, n).T


# ---------------------------------------------------------------------- the learner


@dataclass
class UpdateReport:
    """What one `update` call did."""

    updates: int = 0
    walks: int = 0
    seconds: float = 0.0
    reward: float = 0.0
    success: float = 0.0
    policy_loss: float = 0.0
    ewc_penalty: float = 0.0
    teacher_loss: float = 0.0
    replay_size: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


class PolicyLearner:
    """A path policy going on learning from experience; see the module docstring."""

    def __init__(
        self,
        net: PathPolicyNet,
        graph: WalkGraph,
        hops: int,
        facts: np.ndarray,
        config: LearnerConfig | None = None,
        reward_model: Callable[..., np.ndarray] | None = None,
        replay: PrioritizedReplay | None = None,
        anchor: ElasticAnchor | None = None,
        demos: Demonstrations | None = None,
    ) -> None:
        self.config = config or LearnerConfig()
        self.net, self.graph, self.hops = net, graph, hops
        self.facts = np.asarray(facts, np.int64).reshape(-1, 3)
        self.reward_model = reward_model
        c = self.config
        self.replay = replay or PrioritizedReplay(c.replay_capacity, c.alpha, c.beta)
        self.anchor = anchor if c.ewc > 0 else None
        self.demos = demos
        self.fresh: list[np.ndarray] = []  # experience not yet walked: rows (source, relation, answer, reward, weight)
        self.rng = np.random.default_rng(c.seed)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=c.lr)
        self._index_facts()
        self.updates_done = 0

    def _index_facts(self) -> None:
        """Known answers of (source, relation id), both directions: what a walk is rewarded for reaching."""
        R = self.graph.num_relations
        f = self.facts
        both = np.concatenate([f, np.stack([f[:, 2], f[:, 1] + R, f[:, 0]], 1)]) if len(f) else f
        self._fact_keys = np.unique(self._key(both[:, 0], both[:, 1], both[:, 2])) if len(both) else np.zeros(0)

    def _key(self, s, r, o) -> np.ndarray:
        return (np.asarray(s, np.int64) * (2 * self.graph.num_relations + 1) + r) * self.graph.num_entities + o

    def is_fact(self, s, r, o) -> np.ndarray:
        keys = self._key(s, r, o)
        if not len(self._fact_keys):
            return np.zeros(keys.shape, bool)
        pos = np.minimum(np.searchsorted(self._fact_keys, keys), len(self._fact_keys) - 1)
        return self._fact_keys[pos] == keys

    # ------------------------------------------------------------------ experience
    def add(self, queries: np.ndarray, rewards: np.ndarray, weights: np.ndarray | None = None) -> int:
        """New experience: queries (source, relation id, answer), the reward the answer earns, and a weight."""
        queries = np.asarray(queries, np.int64).reshape(-1, 3)
        rewards = np.asarray(rewards, np.float64).reshape(-1)
        weights = np.ones(len(queries)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        if len(queries):
            self.fresh.append(np.column_stack([queries, rewards, weights]))
        return len(queries)

    def add_facts(self, facts: np.ndarray) -> int:
        """Facts (head, relation id, tail) that joined the graph: rewarded from now on, and each a query
        to learn (both directions). The WalkGraph must already hold them (`grow`)."""
        facts = np.asarray(facts, np.int64).reshape(-1, 3)
        if not len(facts):
            return 0
        self.facts = np.unique(np.concatenate([self.facts, facts]), axis=0)
        self._index_facts()
        R = self.graph.num_relations
        both = np.concatenate([facts, np.stack([facts[:, 2], facts[:, 1] + R, facts[:, 0]], 1)])
        return self.add(both, np.ones(len(both)))

    def grow(self, graph: WalkGraph, facts: np.ndarray) -> None:
        """Walk `graph` from now on (a rebuild with new facts, perhaps new entities and relations), and
        reward `facts` (its stored facts, in its ids). The net's tables grow to fit; known rows keep."""
        self.net = grow_net(self.net, self.graph.id2entity, self.graph.id2relation, graph)
        self.optimizer = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=self.config.lr)
        old_names = (self.graph.id2entity, self.graph.id2relation)
        if self.anchor is not None:
            self.anchor = self.anchor.grown(*old_names, graph)
        self.graph = graph
        self.facts = np.asarray(facts, np.int64).reshape(-1, 3)
        self._index_facts()
        if self.replay is not None and len(self.replay) and old_names != (graph.id2entity, graph.id2relation):
            self.replay.queries = _remap(self.replay.queries, old_names, graph)

    # ------------------------------------------------------------------ rewards
    def rewards(self, queries: np.ndarray, rewarded: np.ndarray, walks: Walks, group: int = 1) -> np.ndarray:
        """1 at a fact's answer or at an answer experience confirms, 0 at one it rejects (a rating
        rejects; a fact still wins), plus the reward model's centred belief in the walk. Rows come in
        groups of `group` walks of one query (their agreement is a feature of the reward model)."""
        ends = walks.ends
        fact = self.is_fact(queries[:, 0], queries[:, 1], ends)
        at_answer = ends == queries[:, 2]
        out = np.where(fact | (at_answer & (rewarded > 0.5)), 1.0, 0.0)
        if self.reward_model is not None and self.config.reward_model_weight > 0:
            grouped = ends.reshape(-1, group)
            agreement = (grouped[:, :, None] == grouped[:, None, :]).mean(2).reshape(-1)
            belief = np.asarray(self.reward_model(queries, walks.relations, ends, agreement), np.float64)
            out = out + self.config.reward_model_weight * (belief - 0.5)
        return out

    # ------------------------------------------------------------------ updating
    def _batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """An update's queries, rewards, weights and (for replayed ones) buffer positions."""
        c = self.config
        fresh = np.concatenate(self.fresh) if self.fresh else np.zeros((0, 5))
        take_fresh = (
            len(fresh) if not (c.replay and len(self.replay)) else int(c.queries_per_update * (1 - c.replay_share))
        )
        take_fresh = min(len(fresh), max(take_fresh, 0), c.queries_per_update)
        if not c.replay:
            take_fresh = min(len(fresh), c.queries_per_update)
        pick, rest = fresh[:take_fresh], fresh[take_fresh:]
        self.fresh = [rest] if len(rest) else []
        if c.replay and len(pick):
            self.replay.add(pick[:, :3], pick[:, 3], pick[:, 4])
        queries, rewards, weights = pick[:, :3].astype(np.int64), pick[:, 3], pick[:, 4]
        index = None
        if c.replay and len(self.replay):
            drawn = (
                self.replay.sample(c.queries_per_update - len(pick), self.rng)
                if len(pick) < c.queries_per_update
                else None
            )
            if drawn is not None and len(drawn.index):
                queries = np.concatenate([queries, drawn.queries])
                rewards = np.concatenate([rewards, drawn.rewards])
                weights = np.concatenate([weights, drawn.weights])
                index = np.concatenate([np.full(len(pick), -1), drawn.index])
        return queries, rewards, weights, index

    def pending(self) -> int:
        """Experience added but not yet walked."""
        return int(sum(len(f) for f in self.fresh))

    def update(self, progress: Callable[[dict[str, Any]], None] | None = None) -> UpdateReport:
        """Up to `config.updates` PPO updates (or `config.minutes`); stops early when there is nothing
        to learn from (no fresh experience, an empty buffer and no teacher)."""
        c = self.config
        report = UpdateReport()
        started = time.perf_counter()
        for _ in range(c.updates):
            if c.minutes is not None and time.perf_counter() - started > c.minutes * 60:
                break
            queries, rewarded, weights, index = self._batch()
            if not len(queries) and self.demos is None:
                break
            step_started = time.perf_counter()
            point = self._step(queries, rewarded, weights, index, report.updates, c.updates)
            report.updates += 1
            report.history.append(point)
            if progress is not None:
                seconds = time.perf_counter() - step_started
                # named as a training run's iterations are, so the Runs view plots a learner's curve too
                progress(
                    {
                        "iteration": report.updates,
                        "episode_return_mean": point["reward"],
                        "env_steps_per_s": point["walks"] * self.hops / max(seconds, 1e-9),
                        **point,
                    }
                )
        report.seconds = time.perf_counter() - started
        report.replay_size = len(self.replay)
        if report.history:
            for key in ("reward", "success", "policy_loss", "ewc_penalty", "teacher_loss"):
                setattr(report, key, float(np.mean([h[key] for h in report.history])))
            report.walks = int(sum(h["walks"] for h in report.history))
        self.updates_done += report.updates
        return report

    def _step(self, queries, rewarded, weights, index, step: int, steps: int) -> dict[str, float]:
        c = self.config
        k = c.walks_per_query
        point = {"reward": 0.0, "success": 0.0, "policy_loss": 0.0, "ewc_penalty": 0.0, "teacher_loss": 0.0}
        walks = None
        if len(queries):
            rep_q = np.repeat(queries, k, axis=0)
            walks = sample_walks(self.net, self.graph, rep_q, self.hops, self.generator)
            reward = self.rewards(rep_q, np.repeat(rewarded, k), walks, k)
            # the baseline is the mean reward of the query's own walks (GRPO's group baseline): a
            # value head would lag behind what use brings
            grouped = reward.reshape(-1, k)
            advantage = (grouped - grouped.mean(1, keepdims=True)).reshape(-1)
            w = np.repeat(weights / max(weights.mean(), 1e-9), k)
            reached = (walks.ends == rep_q[:, 2]).reshape(-1, k).mean(1)
            if index is not None:
                replayed = index >= 0
                surprise = np.where(rewarded > 0.5, 1.0 - reached, reached)
                self.replay.update_priorities(index[replayed], surprise[replayed])
            point.update(reward=float(reward.mean()), success=float(reached.mean()), walks=float(len(rep_q)))
        anneal = c.teacher_weight * max(0.0, 1.0 - step / max(steps, 1))
        self.net.train()
        for _ in range(c.epochs):
            loss = torch.zeros((), dtype=torch.float64)
            if walks is not None:
                logp = _log_probs(self.net, walks).double()
                ratio = torch.exp(logp - torch.as_tensor(walks.logp))
                adv = torch.as_tensor(advantage)[:, None]
                surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - c.clip, 1 + c.clip) * adv)
                policy_loss = -(torch.as_tensor(w)[:, None] * surrogate).mean()
                entropy = -logp.mean()  # the sampled actions' surprisal: an unbiased entropy estimate
                loss = loss + policy_loss - c.entropy * entropy
                point["policy_loss"] = float(policy_loss.detach())
            if self.anchor is not None:
                penalty = self.anchor.penalty(self.net)
                loss = loss + c.ewc * penalty
                point["ewc_penalty"] = float(penalty.detach())
            if self.demos is not None and len(self.demos) and anneal > 0:
                pick = self.rng.choice(len(self.demos), size=min(c.teacher_batch, len(self.demos)), replace=False)
                t_loss = teacher_loss(self.net, self.demos, pick)
                loss = loss + anneal * t_loss
                point["teacher_loss"] = float(t_loss.detach())
            if loss.requires_grad:
                self.optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                self.optimizer.step()
        self.net.eval()
        point.setdefault("walks", 0.0)
        return point

    def consolidate(self, queries: np.ndarray | None = None) -> ElasticAnchor | None:
        """End of a version: anchor EWC at the current weights, with the Fisher of the experience so far
        (the buffer's queries, else the facts). Returns the anchor (None with EWC off)."""
        if self.config.ewc <= 0:
            return None
        if queries is None:
            queries = self.replay.queries if len(self.replay) else self.facts
        queries = np.asarray(queries, np.int64).reshape(-1, 3)
        if len(queries) > self.config.fisher_queries:
            queries = queries[self.rng.choice(len(queries), self.config.fisher_queries, replace=False)]
        self.anchor = fisher_anchor(self.net, self.graph, queries, self.hops, seed=self.config.seed)
        return self.anchor


# ---------------------------------------------------------------------- growing


def grow_net(net: PathPolicyNet, entities: Sequence[str], relations: Sequence[str], new: WalkGraph) -> PathPolicyNet:
    """`net`, trained over `entities` and `relations` (names by id), re-indexed for `new`'s ids: rows of
    names both know are kept; a new entity gets a zero vector (a small random one when the policy uses
    entity vectors), a new relation the mean of the known relation rows. The same net when nothing changed."""
    if list(entities) == new.id2entity and list(relations) == new.id2relation:
        return net
    if new.imagined_per_entity:
        raise ValueError("a policy that walks imagined edges cannot grow; retrain it with `reverie train policy`")
    grown = PathPolicyNet(new.num_entities, new.num_relation_ids, net.net_config)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ent = state["entity_emb.weight"]
    if net.net_config.use_entities:
        new_ent = grown.entity_emb.weight.detach().clone()
    else:
        new_ent = torch.zeros(new.num_entities, ent.shape[1])
    old_e = {name: i for i, name in enumerate(entities)}
    for name, i in new.entity2id.items():
        if name in old_e:
            new_ent[i] = ent[old_e[name]]
    rel = state["relation_emb.weight"]
    old_r = {name: i for i, name in enumerate(relations)}
    R_old, R_new = len(relations), new.num_relations
    mean_fwd, mean_inv = rel[:R_old].mean(0), rel[R_old : 2 * R_old].mean(0)
    new_rel = torch.empty(new.num_relation_ids + 1, rel.shape[1])
    for name, i in new.relation2id.items():
        j = old_r.get(name)
        new_rel[i] = rel[j] if j is not None else mean_fwd
        new_rel[i + R_new] = rel[j + R_old] if j is not None else mean_inv
    new_rel[2 * R_new] = rel[2 * R_old]  # NO_OP
    new_rel[new.num_relation_ids] = rel[-1]  # the start-of-path token
    state["entity_emb.weight"], state["relation_emb.weight"] = new_ent, new_rel
    grown.load_state_dict(state)
    return grown.eval()


def _remap(queries: np.ndarray, old_names: tuple[list[str], list[str]], new: WalkGraph) -> np.ndarray:
    """Queries in an old graph's ids, in a new graph's (relation ids keep their direction)."""
    entities, relations = old_names
    R_old, R_new = len(relations), new.num_relations
    ent = np.array([new.entity2id[name] for name in entities], np.int64)
    rel_map = np.array([new.relation2id[name] for name in relations], np.int64)
    r = queries[:, 1]
    inverse = r >= R_old
    base = rel_map[np.where(inverse, r - R_old, r)]
    return np.column_stack([ent[queries[:, 0]], base + inverse * R_new, ent[queries[:, 2]]])
