"""`PathPolicyModule`: the RLlib (new API stack) wrapper around the Ray-free `PathPolicyNet`.

All computation lives in reverie/agents/path_policy/net.py; this module only adapts RLlib's batch format:
`batch[Columns.OBS]` is the KGPathVectorEnv dict observation (reverie/agents/path_policy/env.py) as torch
tensors. The forward passes return `Columns.ACTION_DIST_INPUTS` (masked logits; RLlib's default
TorchCategorical for the Discrete action space), and the train pass also `Columns.EMBEDDINGS` (the
policy state) so PPO's value loss reuses it through `compute_values` instead of a second pass.

model_config keys: num_entities, num_relation_ids (both taken from the observation space's Box
bounds unless given), and the fields of NetConfig (reverie/agents/path_policy/config.py, with their defaults).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, cast

import gymnasium as gym
import numpy as np
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from reverie.agents.path_policy.net import PathPolicyNet


def _bound(space: Optional[gym.Space], key: str) -> Optional[int]:
    """1 + the Box upper bound of observation key `key`, when finite and sane."""
    if not isinstance(space, gym.spaces.Dict) or key not in space.spaces:
        return None
    sub = space[key]
    if not isinstance(sub, gym.spaces.Box):
        return None
    high = np.asarray(sub.high).max()
    if not np.isfinite(high) or high < 0 or high > 2**31:
        return None
    return int(high) + 1


class PathPolicyModule(TorchRLModule, ValueFunctionAPI):
    """PPO-ready RLModule over KGPathVectorEnv observations; `self.net` is a `PathPolicyNet`."""

    def setup(self) -> None:
        # RLlib types model_config wider (dict | DefaultModelConfig); train.py builds this module with a dict.
        config = dict(cast("dict[str, Any]", self.model_config or {}))
        if "num_entities" not in config:
            config["num_entities"] = _bound(self.observation_space, "current")
        if "num_relation_ids" not in config:
            config["num_relation_ids"] = _bound(self.observation_space, "action_relations")
        missing = [k for k in ("num_entities", "num_relation_ids") if not config.get(k)]
        if missing:
            raise ValueError(
                f"PathPolicyModule needs model_config {missing} (the observation space does not bound them)"
            )
        self.net = PathPolicyNet.from_config(config)

    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        obs = batch[Columns.OBS]
        state = self.net.state(obs)
        return {Columns.ACTION_DIST_INPUTS: self.net.logits_from_state(state, obs)}

    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        obs = batch[Columns.OBS]
        state = self.net.state(obs)
        return {
            Columns.ACTION_DIST_INPUTS: self.net.logits_from_state(state, obs),
            Columns.EMBEDDINGS: state,
        }

    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None):
        if embeddings is None:
            embeddings = self.net.state(batch[Columns.OBS])
        return self.net.value_from_state(embeddings)
