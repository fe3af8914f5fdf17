"""MINERVA-style path-finding environment, natively vectorised: one object steps num_envs walks.

Each episode samples a query (source, query relation, answer) uniformly from the training facts
and their inverses, starts at the source and takes exactly `hops` steps through the WalkGraph
action tables (NO_OP, column 0, stays put). The fact being asked is masked (the edge source ->
answer with the query relation, and its inverse back), so the answer has to be reached by another
path, as MINERVA and MultiHopKG train; `mask_query_edges="all"` masks every query-relation edge
at the source instead. The reward comes at the last step only: 1.0 at the answer (`any_answer`:
at any known training answer of the query), else `shaping` times the shaper's belief in the
entity reached (MultiHopKG's reward shaping; the shaper is the world model, or the graph reasoner
with `shaper="reasoner"`), else 0. The belief
is `exp(score - best score of the query)`, 1 for the world model's favourite: PyKEEN models trained
with a softmax loss are not calibrated for MultiHopKG's `sigmoid(score)`, which is above 0.98 for
nearly every true answer and above 0.5 for ~40% of all UMLS entities, so it hardly separates the
answer from the crowd (`shaping_mode="sigmoid"` keeps it, for comparison). `action_dropout` hides each non-NO_OP
action with that probability in every observation, for exploration while training.

Autoreset follows gymnasium 1.x NEXT_STEP semantics: the step after a sub-env terminated resets
it (its action is ignored) and returns its first observation with reward 0 and terminated False.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from reverie.agents.path_policy.config import EnvConfig
from reverie.agents.path_policy.walkgraph import WalkGraph

log = logging.getLogger(__name__)

RUNTIME_KEYS = ("dataset", "num_envs", "seed", "world_model", "world_model_path", "reasoner_path")
"""Config keys besides EnvConfig's fields: what to walk, how many walks, the world model object or file,
and the graph reasoner's file (when it shapes)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


class RowCache:
    """`score_tails` with each (head, relation) row computed once: the graph reasoner propagates over the
    whole graph per query, and PPO asks the same training queries again and again. Rows are kept up to
    `max_bytes`, then the cache starts afresh."""

    def __init__(self, score_tails, max_bytes: int = 512 << 20) -> None:
        self._score_tails, self._max_bytes = score_tails, max_bytes
        self._rows: dict[tuple[int, int], np.ndarray] = {}

    def score_tails(self, heads: np.ndarray, relations: np.ndarray) -> np.ndarray:
        keys = list(zip(np.asarray(heads).tolist(), np.asarray(relations).tolist()))
        rows = {k: self._rows[k] for k in set(keys) & self._rows.keys()}
        missing = sorted(set(keys) - rows.keys())
        if missing:
            fresh = np.asarray(
                self._score_tails(np.array([h for h, _ in missing]), np.array([r for _, r in missing])), np.float32
            )
            rows.update(zip(missing, fresh))
            if (len(self._rows) + len(missing)) * fresh.shape[1] * 4 > self._max_bytes:
                self._rows.clear()
            self._rows.update(zip(missing, fresh))
        return np.stack([rows[k] for k in keys])


class KGPathVectorEnv(gym.vector.VectorEnv):
    """Vectorised walks over a knowledge graph.

    Config (a dict, e.g. RLlib's EnvContext, and/or keyword arguments, which win): the fields of
    `EnvConfig` (reverie/agents/path_policy/config.py, where their defaults and meanings live), plus
      dataset: name or folder for `load_dataset`, or a KGDataset object (default "umls");
      num_envs: walks stepped together (default 256);
      seed: seeds query sampling (default None: fresh entropy; `reset(seed=...)` reseeds);
      world_model: an object with `score_tails(heads, relations) -> np.ndarray[B, E]`, or
      world_model_path: a file `reverie.models.world_model.WorldModel.load` reads (when shaping or
      imagined edges need one);
      reasoner_path: a file `reverie.models.graph_reasoner.GraphReasoner.load` reads (shaper "reasoner").
    An unknown key is an error.

    `reset(options={"queries": int array (num_envs, 3)})` starts the walks at given
    (source, relation id, answer) queries instead of sampled ones (relation ids may be inverse
    ids; the answer may be -1 when unknown); later autoresets sample training queries again.

    An action outside 0..A-1 or not allowed by the observation's action_mask is taken as NO_OP.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
    render_mode = None

    def __init__(self, config: dict | None = None, **kwargs: Any):
        cfg = {**dict(config or {}), **kwargs}
        fields = {f.name for f in dataclasses.fields(EnvConfig)}
        unknown = set(cfg) - fields - set(RUNTIME_KEYS)
        if unknown:
            raise ValueError(f"KGPathVectorEnv: unknown config keys {sorted(unknown)}")
        self.settings = EnvConfig(**{k: v for k, v in cfg.items() if k in fields})
        self.num_envs = int(cfg.get("num_envs", 256))
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        self.hops = self.settings.hops
        self.shaping = self.settings.shaping
        self.any_answer = self.settings.any_answer
        self.mask_all_query_edges = self.settings.mask_query_edges == "all"
        self.action_dropout = self.settings.action_dropout

        dataset = cfg.get("dataset", "umls")
        if isinstance(dataset, (str, bytes)) or hasattr(dataset, "__fspath__"):
            from reverie.data.kg import load_dataset

            dataset = load_dataset(str(dataset))
        self.dataset_name = dataset.name
        self.graph = WalkGraph.from_dataset(
            dataset, max_actions=self.settings.max_actions, seed=self.settings.graph_seed
        )
        self.imagined_cost = self.settings.imagined_cost
        # World model: for shaping, and to imagine edges.
        self.world_model = None
        if self.settings.needs_world_model:
            self.world_model = cfg.get("world_model")
            if self.world_model is None and cfg.get("world_model_path"):
                from reverie.models.world_model import WorldModel

                self.world_model = WorldModel.load(cfg["world_model_path"])
            if self.world_model is None and self.settings.imagined_edges > 0:
                raise ValueError("imagined_edges needs a world model (world_model or world_model_path)")
            if self.world_model is None:
                log.warning("shaping=%s but no world model given: wrong answers get reward 0", self.shaping)
        # Whose belief shapes a wrong answer's reward: the world model, or the graph reasoner.
        self.shaper = self.world_model
        if self.shaping != 0.0 and self.settings.shaper == "reasoner":
            if not cfg.get("reasoner_path"):
                raise ValueError('shaper "reasoner" needs reasoner_path: train one with `reverie train reasoner`')
            from reverie.models.graph_reasoner import GraphReasoner

            self.shaper = RowCache(GraphReasoner.load(cfg["reasoner_path"]).score_tails)
        if self.settings.imagined_edges > 0:
            assert self.world_model is not None  # checked above: imagined edges need one
            self.graph = self.graph.with_imagined(self.world_model.score_tails, self.settings.imagined_edges)
        g = self.graph
        E, R, A = g.num_entities, g.num_relations, g.max_actions
        self._E, self._R, self._A, self._no_op = E, R, A, g.no_op
        nrel = g.num_relation_ids

        # Queries: training facts and their inverses, distinct.
        train = g.encode(dataset.train, skip_unknown=True)
        if len(train) == 0:
            raise ValueError(f"dataset {dataset.name!r} has no training triples to pose as queries")
        fwd = train
        inv = np.stack([train[:, 2], train[:, 1] + R, train[:, 0]], axis=1)
        q = np.unique(np.concatenate([fwd, inv]), axis=0)
        self.queries = q  # (Q, 3) source, relation id, answer

        # Known answers as sorted keys (s, r, o) -> membership test by searchsorted.
        self._nrel = nrel
        self._known_keys = np.unique(self._key(q[:, 0], q[:, 1], q[:, 2]))

        # Position of every allowed table entry: key (row, relation, target) -> column.
        rows, cols = np.nonzero(g.action_mask[:, 1:])
        cols = cols + 1
        tkeys = self._key(rows, g.action_relations[rows, cols], g.action_entities[rows, cols])
        order = np.argsort(tkeys)
        self._table_keys, self._table_cols = tkeys[order], cols[order].astype(np.int64)
        self._q_col_inv = self._lookup_cols(q[:, 2], g.inverse_relation(q[:, 1]), q[:, 0])
        self._q_col_fwd = self._lookup_cols(q[:, 0], q[:, 1], q[:, 2])

        self._ar = g.action_relations
        self._ae = g.action_entities
        self._am = g.action_mask.astype(np.int8)

        # Spaces.
        hi_e, hi_q, hi_r = max(E - 1, 0), max(2 * R - 1, 0), nrel - 1

        def box(high: int, shape: tuple[int, ...], dtype=np.int64) -> spaces.Box:
            return spaces.Box(low=0, high=high, shape=shape, dtype=dtype)

        self.single_observation_space = spaces.Dict(
            {
                "source": box(hi_e, ()),
                "query_relation": box(hi_q, ()),
                "current": box(hi_e, ()),
                "step": box(self.hops, ()),
                "path_relations": box(hi_r, (self.hops,)),
                "path_entities": box(hi_e, (self.hops,)),
                "action_relations": box(hi_r, (A,)),
                "action_entities": box(hi_e, (A,)),
                "action_mask": box(1, (A,), np.int8),
            }
        )
        self.single_action_space = spaces.Discrete(A)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        # Walk state.
        N, H = self.num_envs, self.hops
        self._idx = np.arange(N)
        self._src = np.zeros(N, np.int64)
        self._qrel = np.zeros(N, np.int64)
        self._ans = np.zeros(N, np.int64)
        self._col_inv = np.full(N, -1, np.int64)
        self._col_fwd = np.full(N, -1, np.int64)
        self._cur = np.zeros(N, np.int64)
        self._step = np.zeros(N, np.int64)
        self._path_rel = np.full((N, H), self._no_op, np.int64)
        self._path_ent = np.zeros((N, H), np.int64)
        self._imagined_steps = np.zeros(N, np.int64)
        self._needs_reset = np.ones(N, bool)

        if cfg.get("seed") is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(int(cfg["seed"]))

    # ------------------------------------------------------------------ helpers
    def _key(self, s, r, o) -> np.ndarray:
        return (np.asarray(s, np.int64) * self._nrel + np.asarray(r, np.int64)) * self._E + np.asarray(o, np.int64)

    def _lookup_cols(self, s, r, o) -> np.ndarray:
        """Column of edge (s, r, o) in row s of the action tables, -1 when absent (or o < 0)."""
        s, r, o = (np.asarray(x, np.int64) for x in (s, r, o))
        keys = self._key(s, r, np.maximum(o, 0))
        if self._table_keys.size == 0:
            return np.full(keys.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self._table_keys, keys), self._table_keys.size - 1)
        found = (self._table_keys[pos] == keys) & (o >= 0) & (s >= 0)
        return np.where(found, self._table_cols[pos], -1)

    def is_answer(self, sources, relations, entities) -> np.ndarray:
        """Whether `entities` is a known training answer of (source, relation id); vectorised."""
        keys = self._key(sources, relations, entities)
        pos = np.minimum(np.searchsorted(self._known_keys, keys), self._known_keys.size - 1)
        return self._known_keys[pos] == keys

    def _start(self, which: np.ndarray, queries: np.ndarray | None = None) -> None:
        """Begin new walks in sub-envs `which` (int index array)."""
        n = which.size
        if n == 0:
            return
        if queries is None:
            pick = self.np_random.integers(0, len(self.queries), size=n)
            q = self.queries[pick]
            col_inv, col_fwd = self._q_col_inv[pick], self._q_col_fwd[pick]
        else:
            q = queries
            col_inv = self._lookup_cols(q[:, 2], self.graph.inverse_relation(q[:, 1]), q[:, 0])
            col_fwd = self._lookup_cols(q[:, 0], q[:, 1], q[:, 2])
        self._src[which] = q[:, 0]
        self._qrel[which] = q[:, 1]
        self._ans[which] = q[:, 2]
        self._col_inv[which] = col_inv
        self._col_fwd[which] = col_fwd
        self._cur[which] = q[:, 0]
        self._step[which] = 0
        self._path_rel[which] = self._no_op
        self._path_ent[which] = q[:, 0:1]
        self._imagined_steps[which] = 0
        self._needs_reset[which] = False

    def _query_edge_mask(self, cur: np.ndarray, actions_rel: np.ndarray) -> np.ndarray:
        """True where an action is the fact being asked, which the walk may not take: the edge
        source -> answer with the query relation, and at the answer the inverse edge back. With
        mask_query_edges="all", every query-relation edge at the source (needed with any_answer,
        where a direct edge to another answer would be a one-hop shortcut)."""
        if self.mask_all_query_edges:
            out = (cur == self._src)[:, None] & (actions_rel == self._qrel[:, None])
        else:
            out = np.zeros(actions_rel.shape, bool)
            f = (cur == self._src) & (self._col_fwd >= 0)
            out[self._idx[f], self._col_fwd[f]] = True
        b = (cur == self._ans) & (self._col_inv >= 0)
        out[self._idx[b], self._col_inv[b]] = True
        return out

    def _observe(self) -> dict[str, np.ndarray]:
        cur = self._cur
        mask = self._am[cur]
        mask[self._query_edge_mask(cur, self._ar[cur])] = 0
        if self.action_dropout > 0.0:
            drop = self.np_random.random(mask.shape) < self.action_dropout
            drop[:, 0] = False  # NO_OP always stays
            mask[drop] = 0
        self._mask = mask
        return self.graph.observation(self._src, self._qrel, cur, self._step, self._path_rel, self._path_ent, mask)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        queries = None
        if options and options.get("queries") is not None:
            queries = np.asarray(options["queries"], dtype=np.int64).reshape(-1, 3)
            if len(queries) != self.num_envs:
                raise ValueError(f"options['queries'] needs {self.num_envs} rows, got {len(queries)}")
        self._start(self._idx, queries)
        return self._observe(), {}

    def step(self, actions):
        N, A = self.num_envs, self._A
        a = np.asarray(actions, dtype=np.int64).reshape(N)
        cur = self._cur
        a = np.where((a >= 0) & (a < A), a, 0)
        valid = self._mask[self._idx, a].astype(bool)  # what the last observation allowed
        a = np.where(valid, a, 0)

        resetting = self._needs_reset
        live = self._idx[~resetting]
        rewards = np.zeros(N, dtype=np.float64)
        terminated = np.zeros(N, dtype=bool)
        if live.size:
            al, cl, st = a[live], cur[live], self._step[live]
            nxt, taken = self._ae[cl, al], self._ar[cl, al]
            if self.graph.imagined_per_entity:
                self._imagined_steps[live] += taken >= self.graph.imagined_offset
            self._path_rel[live, st] = taken
            self._path_ent[live, st] = nxt
            self._cur[live] = nxt
            self._step[live] = st + 1
            done = live[st + 1 >= self.hops]
            if done.size:
                terminated[done] = True
                rewards[done] = self._final_rewards(done)
        if resetting.any():
            self._start(self._idx[resetting])
        self._needs_reset = terminated.copy()
        return self._observe(), rewards, terminated, np.zeros(N, dtype=bool), {}

    def _final_rewards(self, which: np.ndarray) -> np.ndarray:
        src, rel, cur = self._src[which], self._qrel[which], self._cur[which]
        if self.any_answer:
            hit = self.is_answer(src, rel, cur)
        else:
            hit = cur == self._ans[which]
        out = hit.astype(np.float64)
        if self.shaping != 0.0 and self.shaper is not None:
            miss = np.nonzero(~hit)[0]
            if miss.size:
                scores = np.asarray(self.shaper.score_tails(src[miss], rel[miss]))
                if scores.ndim != 2 or scores.shape[0] != miss.size or scores.shape[1] != self._E:
                    raise ValueError(
                        f"{self.settings.shaper} score_tails returned shape {scores.shape}, expected ({miss.size}, {self._E}): "
                        "its entity ids must match the WalkGraph's (sorted names)"
                    )
                reached = scores[np.arange(miss.size), cur[miss]].astype(np.float64)
                if self.settings.shaping_mode == "sigmoid":
                    belief = _sigmoid(reached)
                else:
                    belief = np.exp(reached - scores.max(axis=1))
                out[miss] = self.shaping * belief
        if self.graph.imagined_per_entity:
            out -= self.imagined_cost * self._imagined_steps[which]
        return out

    def __repr__(self) -> str:
        return f"KGPathVectorEnv({self.dataset_name!r}, num_envs={self.num_envs}, hops={self.hops}, actions={self._A})"
