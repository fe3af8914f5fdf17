"""Train a path policy with RLlib PPO (new API stack) on KGPathVectorEnv.

Three steps, each its own function: `run_ppo` trains the net, `save_policy_folder` writes the
self-contained checkpoint, `evaluate.fit_arbiter` fits the arbiter (the weights of path evidence,
world model and reasoner, and its temperature) on the dev split. `train_policy` runs them in order, after training the dataset's world
model when the walks need one.

The env is natively vectorised: with `gym_env_vectorize_mode="vector_entry_point"` RLlib calls
`KGPathVectorEnv(env_ctx | {"num_envs": num_envs_per_env_runner})`, so ONE env object steps all
walks with numpy. Sampling and learning both run in the calling process (num_env_runners=0,
num_learners=0); RLlib's per-step Python work is the limit, not the env. The caller initialises Ray.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from reverie.policies.config import PolicyMeta, PolicyTrainConfig

log = logging.getLogger(__name__)


def policy_dir(settings: Any, dataset_name: str) -> Path:
    """Where the policy of `dataset_name` lives: settings.home / "policies" / <name>."""
    return Path(settings.home) / "policies" / dataset_name


def env_config(config: PolicyTrainConfig, world_model_path: str | Path | None = None,
               reasoner_path: str | Path | None = None) -> dict[str, Any]:
    """KGPathVectorEnv's config for these settings (RLlib hands it to the env as a dict)."""
    out = {"dataset": config.dataset, "seed": config.seed, **dataclasses.asdict(config.env)}
    if world_model_path:
        out["world_model_path"] = str(world_model_path)
    if reasoner_path:
        out["reasoner_path"] = str(reasoner_path)
    return out


def build_ppo_config(config: PolicyTrainConfig, world_model_path: str | Path | None = None,
                     reasoner_path: str | Path | None = None):
    """The RLlib PPOConfig `run_ppo` trains with (exposed for benchmarks and tests)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from reverie.policies.env import KGPathVectorEnv
    from reverie.policies.module import PathPolicyModule

    hops, walks = config.env.hops, config.walks
    return (
        PPOConfig()
        .environment(env=KGPathVectorEnv, env_config=env_config(config, world_model_path, reasoner_path))
        .framework("torch")
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=walks,  # handed to KGPathVectorEnv as config["num_envs"]
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=hops * config.ppo.batches_per_iteration,
        )
        .learners(num_learners=0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=PathPolicyModule, model_config=dataclasses.asdict(config.net)))
        .training(**config.ppo.rllib_training(walks, hops))
        .reporting(metrics_num_episodes_for_smoothing=max(walks * config.ppo.batches_per_iteration, 100))
        .debugging(seed=config.seed, log_level="ERROR")
    )


@dataclass
class PPORun:
    """What `run_ppo` trained: the net, the graph it walked, and each iteration's report."""

    net: Any  # PathPolicyNet
    graph: Any  # WalkGraph
    dataset_name: str
    history: list[dict[str, Any]]


def ppo_iterations(algo: Any, iterations: int, max_seconds: float | None, label: str,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Call algo.train() `iterations` times, or until `max_seconds` of it pass; one report per call.

    progress(info) is called after every iteration with keys: iteration, iterations, env_steps,
    env_steps_per_s (sampled env steps / wall time of that train() call, sampling + learning),
    episode_return_mean, seconds (that train() call), sample_seconds and learn_seconds (RLlib's
    smoothed timers), sample_steps_per_s (env steps / sample_seconds), elapsed.
    """
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        ENV_RUNNER_SAMPLING_TIMER,
        EPISODE_RETURN_MEAN,
        LEARNER_UPDATE_TIMER,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        TIMERS,
    )

    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    steps_before = 0
    for it in range(1, iterations + 1):
        t0 = time.perf_counter()
        result = algo.train()
        seconds = time.perf_counter() - t0
        runner = result.get(ENV_RUNNER_RESULTS, {})
        steps = int(runner.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, steps_before))
        ret = runner.get(EPISODE_RETURN_MEAN)
        timers = result.get(TIMERS, {})
        sample_s = float(timers.get(ENV_RUNNER_SAMPLING_TIMER, float("nan")))
        info = {
            "iteration": it,
            "iterations": iterations,
            "env_steps": steps,
            "env_steps_per_s": (steps - steps_before) / seconds if seconds > 0 else 0.0,
            "episode_return_mean": float(ret) if ret is not None else float("nan"),
            "seconds": seconds,
            "sample_seconds": sample_s,
            "learn_seconds": float(timers.get(LEARNER_UPDATE_TIMER, float("nan"))),
            "sample_steps_per_s": (steps - steps_before) / sample_s if sample_s > 0 else float("nan"),
            "elapsed": time.perf_counter() - started,
        }
        steps_before = steps
        history.append(info)
        log.info("%s iteration %d/%d: %.0f env steps/s, return %.3f", label, it, iterations,
                 info["env_steps_per_s"], info["episode_return_mean"])
        if progress is not None:
            progress(info)
        if max_seconds is not None and info["elapsed"] >= max_seconds:
            break
    return history


def run_ppo(config: PolicyTrainConfig, world_model_path: str | Path | None = None,
            progress: Callable[[dict[str, Any]], None] | None = None, reasoner_path: str | Path | None = None) -> PPORun:
    """Train with PPO for `config.iterations` algo.train() calls, or until `config.minutes` pass;
    `progress` as in `ppo_iterations`."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo = None
    try:
        algo = build_ppo_config(config, world_model_path, reasoner_path).build_algo()
        history = ppo_iterations(algo, config.iterations, config.minutes * 60 if config.minutes else None,
                                 f"policy {config.dataset}", progress)
        env = algo.env_runner.env.unwrapped
        # the local EnvRunner's module, synced from the learner after each update
        return PPORun(net=algo.get_module().net, graph=env.graph, dataset_name=env.dataset_name, history=history)
    finally:
        if algo is not None:
            algo.stop()
        torch.set_num_threads(previous_threads)


def save_policy_folder(folder: Path, net: Any, meta: PolicyMeta, world_model_path: str | Path | None,
                       reasoner_path: str | Path | None = None) -> Path:
    """Write the self-contained checkpoint: weights and config.json, with the world model and the graph
    reasoner beside them when the dataset has them (and none left from an earlier training otherwise)."""
    from reverie.atomic import atomic_copy
    from reverie.policies.bundle import REASONER_FILE, WORLD_MODEL_FILE
    from reverie.policies.net import save_policy

    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((world_model_path, WORLD_MODEL_FILE), (reasoner_path, REASONER_FILE)):
        if source:
            atomic_copy(source, folder / name)
        else:
            (folder / name).unlink(missing_ok=True)
    return save_policy(net, folder, meta=meta)


def train_policy(settings: Any, config: PolicyTrainConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None,
                 message: Callable[[str], None] | None = None) -> Path:
    """Train, save and tune the policy of `config.dataset`; returns its folder (policy_dir).

    When the walks need a world model (shaping or imagined edges) the dataset's cached one is used,
    trained first when missing (`config.world_model`); it is copied into the policy folder, and so is
    the dataset's graph reasoner when `reverie train reasoner` made one. The arbiter is then fit on dev.
    `message` hears what happens besides the iterations (the world model being trained).
    Ray must already be initialised by the caller.
    """
    from reverie.graph_store.datasets import load_dataset
    from reverie.models.graph_reasoner import reasoner_path
    from reverie.models.world_model import ensure_world_model
    from reverie.policies.bundle import load_bundle
    from reverie.policies.evaluate import fit_arbiter

    data = load_dataset(config.dataset)
    world_model_path = None
    if config.env.needs_world_model:
        world_model_path = ensure_world_model(settings.home, data, config.world_model, message or log.info)
    reasoner = reasoner_path(settings.home, data.name)
    shaping_reasoner = None
    if config.env.shaping != 0.0 and config.env.shaper == "reasoner":
        if not reasoner.is_file():
            raise FileNotFoundError(f"shaping by the reasoner needs {reasoner}: run `reverie train reasoner --dataset {data.name}` first")
        shaping_reasoner = reasoner
    from reverie.runs import RunLog

    run_log = RunLog(settings.home, "policy", data.name)  # the web page's curve, written as it trains
    run = run_ppo(config, world_model_path, run_log.and_then(progress), shaping_reasoner)
    last = run.history[-1]
    meta = PolicyMeta(
        dataset=run.dataset_name, dataset_arg=str(config.dataset), env=config.env, walks=config.walks, seed=config.seed,
        iterations=len(run.history), env_steps=last["env_steps"],
        final_return_mean=None if math.isnan(last["episode_return_mean"]) else last["episode_return_mean"],
        seconds=last["elapsed"], entities=list(run.graph.id2entity), relations=list(run.graph.id2relation),
    )
    folder = save_policy_folder(policy_dir(settings, run.dataset_name), run.net, meta, world_model_path,
                                reasoner if reasoner.is_file() else None)
    bundle = load_bundle(folder, data)
    if bundle.world_model is not None or bundle.reasoner is not None:
        from reverie.policies.net import save_policy

        fit_arbiter(bundle, data)
        save_policy(run.net, folder, meta=bundle.meta)
    return folder
