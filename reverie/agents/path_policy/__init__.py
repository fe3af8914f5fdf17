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
    "PolicyTrainConfig": "reverie.agents.path_policy.config",
    "PolicyMeta": "reverie.agents.path_policy.config",
    "EnvConfig": "reverie.agents.path_policy.config",
    "NetConfig": "reverie.agents.path_policy.config",
    "PPOSettings": "reverie.agents.ppo",
    "WalkGraph": "reverie.agents.path_policy.walkgraph",
    "KGPathVectorEnv": "reverie.agents.path_policy.env",
    "PathPolicyNet": "reverie.agents.path_policy.net",
    "save_policy": "reverie.agents.path_policy.net",
    "load_policy": "reverie.agents.path_policy.net",
    "PolicyBundle": "reverie.agents.path_policy.bundle",
    "load_bundle": "reverie.agents.path_policy.bundle",
    "evaluate_bundle": "reverie.agents.path_policy.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
