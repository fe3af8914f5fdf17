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


def teacher_ppo_learner() -> type:
    """RLlib's PPO learner with the graph reasoner as a teacher: the PPO loss plus `teacher_weight`
    times the cross-entropy of the policy to the reasoner's paths, annealed linearly to 0 over
    `teacher_anneal_steps` sampled env steps (learner_config_dict keys, with `teacher_demos`, the
    Demonstrations file, and `dataset`, `max_actions`, `graph_seed` to rebuild the graph it indexes).
    Built on first use, so importing this module does not import PPO's learner."""
    from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
    from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME

    from reverie.agents.path_policy.learner import Demonstrations, teacher_loss
    from reverie.agents.path_policy.walkgraph import WalkGraph
    from reverie.data.kg import load_dataset

    class TeacherPPOLearner(PPOTorchLearner):
        def build(self) -> None:
            super().build()
            extra = self.config.learner_config_dict
            graph = WalkGraph.from_dataset(
                load_dataset(extra["dataset"]), max_actions=extra["max_actions"], seed=extra["graph_seed"]
            )
            self.demos = Demonstrations.load(extra["teacher_demos"], graph)
            self.teacher_weight = float(extra["teacher_weight"])
            self.anneal_steps = max(int(extra["teacher_anneal_steps"]), 1)
            self.teacher_batch = int(extra.get("teacher_batch", 256))
            self.coefficient = self.teacher_weight
            self.rng = np.random.default_rng(int(extra.get("seed", 0)))

        def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
            loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
            if self.coefficient <= 0 or not len(self.demos):
                return loss
            pick = self.rng.choice(len(self.demos), size=min(self.teacher_batch, len(self.demos)), replace=False)
            cross_entropy = teacher_loss(self.module[module_id].unwrapped().net, self.demos, pick)
            self.metrics.log_value((module_id, "teacher_loss"), float(cross_entropy.detach()), window=1)
            self.metrics.log_value((module_id, "teacher_weight"), self.coefficient, window=1)
            return loss + self.coefficient * cross_entropy.to(loss.dtype)

        def after_gradient_based_update(self, *, timesteps) -> None:
            super().after_gradient_based_update(timesteps=timesteps)
            done = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0) / self.anneal_steps
            self.coefficient = self.teacher_weight * max(0.0, 1.0 - done)

    return TeacherPPOLearner
