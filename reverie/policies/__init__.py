"""Path policies: MINERVA-style walks over the knowledge graph, trained with RL.

- `PolicyTrainConfig` and its parts, `PolicyMeta` (config.py): what a policy is trained with.
- `WalkGraph` (walkgraph.py): id maps, padded action tables and the policy's observation (numpy only).
- `KGPathVectorEnv` (env.py): a gymnasium VectorEnv stepping many walks at once with numpy.
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
    "PolicyTrainConfig": "reverie.policies.config",
    "PolicyMeta": "reverie.policies.config",
    "EnvConfig": "reverie.policies.config",
    "NetConfig": "reverie.policies.config",
    "PPOSettings": "reverie.policies.config",
    "WalkGraph": "reverie.policies.walkgraph",
    "KGPathVectorEnv": "reverie.policies.env",
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
