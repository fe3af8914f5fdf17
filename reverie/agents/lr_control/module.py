"""`LRControlModule`: the RLlib (new API stack) wrapper around the Ray-free `LRControlNet`."""

from __future__ import annotations

from typing import Any, Dict, Optional, cast

import gymnasium as gym
import numpy as np
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule


class LRControlModule(TorchRLModule, ValueFunctionAPI):
    """PPO-ready RLModule over TrainingControlEnv observations; `self.net` is a `LRControlNet`.

    model_config: hidden (default 64); the sizes come from the spaces."""

    def setup(self) -> None:
        from reverie.agents.lr_control.net import LRControlNet

        # RLlib types these wider than train.py builds this module with: a dict model_config, and
        # TrainingControlEnv's spaces (a Box of observations, Discrete actions).
        config = cast("dict[str, Any]", self.model_config or {})
        obs_space, action_space = self.observation_space, self.action_space
        assert isinstance(obs_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Discrete)
        hidden = int(config.get("hidden", 64))
        self.net = LRControlNet(int(np.prod(obs_space.shape)), int(action_space.n), hidden)

    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        logits, _ = self.net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        logits, values = self.net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: values}

    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None):
        if embeddings is not None:
            return embeddings
        return self.net(batch[Columns.OBS])[1]
