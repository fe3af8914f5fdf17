"""Train the training-control agent with RLlib PPO (new API stack) on TrainingControlEnv.

`envs` training runs step together in the calling process (RLlib's local EnvRunner, a gymnasium
SyncVectorEnv); each env step trains its classifier for one interval. The caller initialises Ray.
The agent is saved as a plain torch LRControlNet (reverie/agents/lr_control/net.py), with the
ControlConfig it acts under, and loads without Ray.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from reverie.agents.lr_control.config import LRControlTrainConfig

log = logging.getLogger(__name__)


def build_lr_control_ppo_config(config: LRControlTrainConfig, home: str | Path):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from reverie.agents.lr_control.env import TrainingControlEnv
    from reverie.agents.lr_control.module import LRControlModule

    intervals = config.control.intervals
    env_config = {
        **{f.name: getattr(config.control, f.name) for f in dataclasses.fields(config.control)},
        "home": str(home),
    }
    return (
        PPOConfig()
        .environment(env=TrainingControlEnv, env_config=env_config)
        .framework("torch")
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=config.envs,
            rollout_fragment_length=intervals * config.ppo.batches_per_iteration,
        )
        .learners(num_learners=0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=LRControlModule, model_config={"hidden": config.hidden}))
        .training(**config.ppo.rllib_training(config.envs, intervals))
        .reporting(metrics_num_episodes_for_smoothing=max(config.envs * config.ppo.batches_per_iteration, 10))
        .debugging(seed=config.seed, log_level="ERROR")
    )


def train_lr_control(
    settings: Any, config: LRControlTrainConfig, progress: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """Train the agent and save it under settings.paths.lr_control; returns the folder. `progress` as in
    reverie.agents.training.ppo_iterations."""
    from reverie.agents.lr_control.net import save_lr_control
    from reverie.agents.training import ppo_iterations
    from reverie.runs import RunLog

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo = None
    try:
        algo = build_lr_control_ppo_config(config, settings.home).build_algo()
        run_log = RunLog(settings.home, "tuner", config.control.trainee)  # the web page's curve, written as it trains
        history = ppo_iterations(
            algo,
            config.iterations,
            config.minutes * 60 if config.minutes else None,
            "tuner",
            run_log.and_then(progress),
        )
        net = algo.get_module().net
        last = history[-1]
        meta = {
            "iterations": len(history),
            "env_steps": last["env_steps"],
            "seconds": last["elapsed"],
            "final_return_mean": last["episode_return_mean"],
            "seed": config.seed,
            "envs": config.envs,
            "returns": [h["episode_return_mean"] for h in history],
            "trainee_config": dataclasses.asdict(config.control.trainee_config)
            if config.control.trainee_config
            else None,
        }
        return save_lr_control(net, settings.paths.lr_control, config.control, meta)
    finally:
        if algo is not None:
            algo.stop()
        torch.set_num_threads(previous_threads)
