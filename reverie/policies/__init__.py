"""Path policies: MINERVA-style walks over the knowledge graph, trained with RL.

- `WalkGraph` (walkgraph.py): id maps and padded action tables (numpy only).
- `KGPathVectorEnv` (env.py): a gymnasium VectorEnv stepping many walks at once with numpy.
- `filtered_rank`, `ranking_metrics`, `auc_pr` (metrics.py): link-prediction metrics.
- `PathPolicyNet`, `save_policy`, `load_policy` (net.py): the policy as plain torch.
- `PolicyBundle`, `load_bundle` (bundle.py): a trained policy with its graph and world model.
- `evaluate_bundle` (evaluate.py): the field's filtered tail ranking, by beam search.
- train.py and module.py are the only parts that import Ray (RLlib PPO).

Names load lazily, so importing this package pulls in neither gymnasium, torch nor Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "WalkGraph": "reverie.policies.walkgraph",
    "KGPathVectorEnv": "reverie.policies.env",
    "filtered_rank": "reverie.policies.metrics",
    "ranking_metrics": "reverie.policies.metrics",
    "auc_pr": "reverie.policies.metrics",
    "PathPolicyNet": "reverie.policies.net",
    "save_policy": "reverie.policies.net",
    "load_policy": "reverie.policies.net",
    "PolicyBundle": "reverie.policies.bundle",
    "load_bundle": "reverie.policies.bundle",
    "evaluate_bundle": "reverie.policies.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
