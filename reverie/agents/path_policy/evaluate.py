"""Evaluating a path policy the field's way: beam search, then filtered tail ranking. No Ray.

For each query (source, relation, ?) the policy's beam of `beam` paths of `hops` steps is expanded
step by step, keeping the most probable paths (sum of log-probabilities). An entity's score is its
best path's log-probability; entities no path reaches score -inf and share the worst ranks (mean of
the tied group, see reverie.ranking.filtered_ranks). Ranks are filtered by every known answer of the query
in train, dev and test, tail only, as MINERVA and MultiHopKG evaluate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from reverie.agents.path_policy.walkgraph import WalkGraph
from reverie.data.kg import KGDataset
from reverie.ranking import (
    arbiter_scores,
    auc_pr,
    filtered_calibration_error,
    filtered_ranks,
    fit_temperature,
    ranking_metrics,
)
from reverie.schemas import Triple

DEFAULT_BEAM = 256
"""Beam width at test: MINERVA searched 100 paths, MultiHopKG 128; on UMLS 256 reaches the answer
for 92% of test queries against 76% with 64, for a few seconds of search."""


POOLS = ("max", "sum")
"""How an entity's beam paths make its score (MINERVA's `--pool`): the best path's log-probability, or
the log of the sum of its paths' probabilities (every path that reaches it is evidence)."""


@torch.no_grad()
def beam_scores(
    net,
    graph: WalkGraph,
    queries: np.ndarray,
    hops: int,
    beam: int = DEFAULT_BEAM,
    chunk: int = 64,
    mask_source_query_edges: bool = False,
    pools: tuple[str, ...] = ("max",),
) -> np.ndarray | dict[str, np.ndarray]:
    """Entity scores [Q, E] for queries [Q, 2] of (source id, relation id), pooled as `pools[0]`; with
    more than one pool, {pool: scores} from the same beams.

    mask_source_query_edges: hide every edge with the query relation at the source, as
    `WalkGraph.allowed_actions` does for a policy trained with mask_query_edges="all".
    """
    if not pools or set(pools) - set(POOLS):
        raise ValueError(f"pools must be among {POOLS}, got {pools}")
    net.eval()
    out = {pool: np.full((len(queries), graph.num_entities), -np.inf, dtype=np.float64) for pool in pools}
    for start in range(0, len(queries), chunk):
        part = queries[start : start + chunk]
        ends, logp = _beam_chunk(net, graph, part, hops, beam, mask_source_query_edges)
        finite = np.isfinite(logp)
        rows = np.repeat(np.arange(len(part))[:, None], ends.shape[1], axis=1)[finite] + start
        for pool, scores in out.items():
            (np.maximum if pool == "max" else np.logaddexp).at(scores, (rows, ends[finite]), logp[finite])
    return out[pools[0]] if len(pools) == 1 else out


def _beam_chunk(
    net, graph: WalkGraph, queries: np.ndarray, hops: int, beam: int, mask_source_query_edges: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The beam's paths: where each ends [Q, K] and its log-probability [Q, K]."""
    q = len(queries)
    src, rel = queries[:, 0].astype(np.int64), queries[:, 1].astype(np.int64)
    # beams: [Q, K] with K growing from 1 to `beam`
    cur = src[:, None].copy()
    logp = np.zeros((q, 1))
    path_rel = np.full((q, 1, hops), graph.no_op, np.int64)
    path_ent = np.repeat(src[:, None, None], hops, axis=2)
    for step in range(hops):
        k = cur.shape[1]
        flat_cur = cur.reshape(-1)
        src_k, rel_k = np.repeat(src, k), np.repeat(rel, k)
        hide = mask_source_query_edges
        allowed = graph.allowed_actions(flat_cur, src_k if hide else None, rel_k if hide else None)
        obs = graph.observation(
            src_k, rel_k, flat_cur, step, path_rel.reshape(q * k, hops), path_ent.reshape(q * k, hops), allowed
        )
        logits, _ = net({key: torch.as_tensor(v) for key, v in obs.items()})
        step_logp = torch.log_softmax(logits, dim=-1).double().numpy()
        step_logp[~allowed] = -np.inf
        width = step_logp.shape[1]
        total = (logp.reshape(-1, 1) + step_logp).reshape(q, k * width)
        keep = min(beam, k * width)
        top = np.argpartition(-total, keep - 1, axis=1)[:, :keep]
        rows = np.arange(q)[:, None]
        parent, action = top // width, top % width
        new_logp = total[rows, top]
        parent_cur = cur[rows, parent]
        nxt = graph.action_entities[parent_cur, action]
        nrel = graph.action_relations[parent_cur, action]
        path_rel = path_rel[rows, parent].copy()
        path_ent = path_ent[rows, parent].copy()
        path_rel[:, :, step] = nrel
        path_ent[:, :, step] = nxt
        cur, logp = nxt, new_logp
    return cur, logp


def tail_queries(graph: WalkGraph, triples: Sequence[Triple]) -> np.ndarray:
    """[N, 3] ids of (source, relation, answer) for the triples whose names the graph knows."""
    return graph.encode(triples, skip_unknown=True)


def evaluate_bundle(bundle, dataset: KGDataset, split: str = "test", beam: int = DEFAULT_BEAM) -> dict:
    """Reverie's answer ranking on a split, the field's way (filtered, tail only), five ways:

    the top level ranks by the arbiter (what `reverie ask` answers with: the reasoner, the world model
    and the path evidence, `PolicyBundle.answer_scores`); "policy" by the rollouts' path scores alone
    (MINERVA's measure, with its default max pooling: an entity's best path), "policy_sum" by the same
    beams with MINERVA's sum pooling (all of an entity's paths); "world_model" and "reasoner" by each model alone (None without one). "ece" is
    the expected calibration error of the top answer's confidence. Countries folders also get MINERVA's
    AUC-PR ("auc_pr").
    """
    scores = split_scores(bundle, dataset, split, beam)
    queries, known = scores["queries"], scores["known"]
    regions = countries_regions(bundle.graph, dataset) if dataset.name.lower().startswith("countries") else None

    def measure(ranked: np.ndarray) -> dict:
        out = ranking_metrics(filtered_ranks(ranked, queries[:, 2], known))
        if regions is not None:
            out["auc_pr"] = countries_auc_pr(ranked, queries, regions)
        return out

    result = measure(scores["arbiter"])
    result["policy"] = measure(scores["paths"])
    result["policy_sum"] = measure(scores["paths_sum"])
    result["world_model"] = measure(scores["world_model"]) if scores["world_model"] is not None else None
    result["reasoner"] = measure(scores["reasoner"]) if scores["reasoner"] is not None else None
    result["ece"] = (
        filtered_calibration_error(bundle.confidence(scores["arbiter"]), queries[:, 2], known) if len(queries) else None
    )
    paths = scores["paths"]
    result["reached"] = (
        float(np.isfinite(paths[np.arange(len(queries)), queries[:, 2]]).mean()) if len(queries) else 0.0
    )
    result["queries"] = len(queries)
    result["skipped"] = scores["skipped"]
    return result


def split_scores(bundle, dataset: KGDataset, split: str, beam: int = DEFAULT_BEAM) -> dict:
    """The split's queries [Q, 3], their other known answers, and every ranker's scores [Q, E]: the beam's
    path log-probabilities ("paths"), the world model's, the reasoner's (over its temperature) and the arbiter's."""
    triples = getattr(dataset, split)
    if not triples:
        raise ValueError(f"dataset {dataset.name!r} has no {split} split")
    graph = bundle.graph
    queries = tail_queries(graph, triples)
    everything = graph.known_answers(dataset.train, dataset.graph, dataset.dev, dataset.test, inverse=False)
    pooled = beam_scores(
        bundle.net,
        graph,
        queries[:, :2],
        bundle.hops,
        beam,
        mask_source_query_edges=bundle.mask_source_query_edges,
        pools=("max", "sum"),
    )
    assert isinstance(pooled, dict)  # two pools
    paths = pooled["max"]
    out = bundle.answer_scores(paths, queries[:, 0], queries[:, 1])
    out.update(
        queries=queries,
        paths=paths,
        paths_sum=pooled["sum"],
        skipped=len(triples) - len(queries),
        known=[everything.get((s, r), ()) for s, r, _ in queries.tolist()],
    )
    return out


WORLD_WEIGHTS = (1.0, 0.3, 0.1, 0.0)
"""Weights of the world model beside a reasoner tried on the dev split; on a tie the earlier wins."""
PATH_WEIGHTS = (1.0, 0.3, 3.0, 0.1, 0.0)
"""Weights of path evidence tried on the dev split; on a tie the earlier wins."""


def fit_arbiter(bundle, dataset: KGDataset, beam: int = DEFAULT_BEAM) -> dict:
    """Fit the arbiter on the dev split: the weights of path evidence and (beside a reasoner) of the world
    model with the best MRR, then the temperature that calibrates its softmax. Leaves them in `bundle.meta`;
    returns them. Without a dev split or a model to mix, the weights stay 1 and the temperature 1."""
    meta = bundle.meta
    meta.arbiter_weight, meta.world_weight, meta.temperature = 1.0, 1.0, 1.0
    if not dataset.dev or (bundle.world_model is None and bundle.reasoner is None):
        return {"arbiter_weight": 1.0, "world_weight": 1.0, "temperature": 1.0}
    scores = split_scores(bundle, dataset, "dev", beam)
    queries, known = scores["queries"], scores["known"]
    best = (-1.0, 1.0, 1.0)
    for world_weight in (
        WORLD_WEIGHTS if scores["reasoner"] is not None and scores["world_model"] is not None else (1.0,)
    ):
        for weight in PATH_WEIGHTS:
            ranked = arbiter_scores(scores["paths"], scores["world_model"], weight, scores["reasoner"], world_weight)
            mrr = ranking_metrics(filtered_ranks(ranked, queries[:, 2], known))["mrr"]
            if mrr > best[0]:
                best = (mrr, weight, world_weight)
    meta.arbiter_weight, meta.world_weight = best[1], best[2]
    ranked = arbiter_scores(
        scores["paths"], scores["world_model"], meta.arbiter_weight, scores["reasoner"], meta.world_weight
    )
    meta.temperature = fit_temperature(ranked, queries[:, 2], [set(k) for k in known])
    return {"arbiter_weight": meta.arbiter_weight, "world_weight": meta.world_weight, "temperature": meta.temperature}


def countries_regions(graph: WalkGraph, dataset: KGDataset) -> list[int]:
    """The candidate answers every test country is scored against: the entities at the level of
    the test answers. S1 asks regions (africa, americas, ...: answers of `locatedIn` that are
    never located in anything); MINERVA's S2 files ask subregions (eastern_africa, ...: located in
    a region themselves)."""
    asked = {t.relation for t in dataset.test}
    facts = [t for t in list(dataset.graph) + list(dataset.dev) + list(dataset.test) if t.relation in asked]
    heads = {t.head for t in facts}
    inner = any(t.tail in heads for t in dataset.test)  # do the test answers sit inside something?
    tails = {t.tail for t in facts}
    return sorted(graph.entity2id[name] for name in tails if (name in heads) == inner and name in graph.entity2id)


def countries_auc_pr(scores: np.ndarray, queries: np.ndarray, regions: Sequence[int]) -> float:
    """MINERVA's Countries protocol: every test country is scored against every region; AUC-PR over all pairs."""
    region_ids = np.asarray(regions, np.int64)
    y_score = scores[:, region_ids].reshape(-1)
    y_true = (queries[:, 2:3] == region_ids[None, :]).reshape(-1)
    finite_floor = np.nanmin(np.where(np.isfinite(y_score), y_score, np.nan)) if np.isfinite(y_score).any() else 0.0
    y_score = np.where(np.isfinite(y_score), y_score, finite_floor - 1.0)  # unreached regions score lowest
    return auc_pr(y_true.astype(int), y_score)
