"""Train a path policy with RLlib PPO (new API stack) on KGPathVectorEnv.

Three steps, each its own function: `run_ppo` trains the net, `save_policy_folder` writes the
self-contained checkpoint, `evaluate.fit_arbiter` fits the arbiter (the weights of path evidence,
world model and reasoner, and its temperature) on the dev split. `train_policy` runs them in order, after training the dataset's world
model when the walks need one. `attach_reasoner` adds a graph reasoner trained later to a policy folder and refits the arbiter.

The env is natively vectorised: with `gym_env_vectorize_mode="vector_entry_point"` RLlib calls
`KGPathVectorEnv(env_ctx | {"num_envs": num_envs_per_env_runner})`, so ONE env object steps all
walks with numpy. Sampling and learning both run in the calling process (num_env_runners=0,
num_learners=0); RLlib's per-step Python work is the limit, not the env. The caller initialises Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from reverie.agents.path_policy.config import PolicyMeta, PolicyTrainConfig
from reverie.agents.training import ppo_iterations

if TYPE_CHECKING:
    from reverie.agents.path_policy.bundle import PolicyBundle

log = logging.getLogger(__name__)


def env_config(
    config: PolicyTrainConfig, world_model_path: str | Path | None = None, reasoner_path: str | Path | None = None
) -> dict[str, Any]:
    """KGPathVectorEnv's config for these settings (RLlib hands it to the env as a dict)."""
    out = {"dataset": config.dataset, "seed": config.seed, **dataclasses.asdict(config.env)}
    if world_model_path:
        out["world_model_path"] = str(world_model_path)
    if reasoner_path:
        out["reasoner_path"] = str(reasoner_path)
    return out


def build_ppo_config(
    config: PolicyTrainConfig, world_model_path: str | Path | None = None, reasoner_path: str | Path | None = None
):
    """The RLlib PPOConfig `run_ppo` trains with (exposed for benchmarks and tests)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from reverie.agents.path_policy.env import KGPathVectorEnv
    from reverie.agents.path_policy.module import PathPolicyModule

    hops, envs = config.env.hops, config.envs
    return (
        PPOConfig()
        .environment(env=KGPathVectorEnv, env_config=env_config(config, world_model_path, reasoner_path))
        .framework("torch")
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=envs,  # handed to KGPathVectorEnv as config["num_envs"]
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=hops * config.ppo.batches_per_iteration,
        )
        .learners(num_learners=0)
        .rl_module(
            rl_module_spec=RLModuleSpec(module_class=PathPolicyModule, model_config=dataclasses.asdict(config.net))
        )
        .training(**config.ppo.rllib_training(envs, hops))
        .reporting(metrics_num_episodes_for_smoothing=max(envs * config.ppo.batches_per_iteration, 100))
        .debugging(seed=config.seed, log_level="ERROR")
    )


@dataclass
class PPORun:
    """What `run_ppo` trained: the net, the graph it walked, and each iteration's report."""

    net: Any  # PathPolicyNet
    graph: Any  # WalkGraph
    dataset_name: str
    history: list[dict[str, Any]]


def run_ppo(
    config: PolicyTrainConfig,
    world_model_path: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    reasoner_path: str | Path | None = None,
) -> PPORun:
    """Train with PPO for `config.iterations` algo.train() calls, or until `config.minutes` pass;
    `progress` as in `ppo_iterations`."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo = None
    try:
        algo = build_ppo_config(config, world_model_path, reasoner_path).build_algo()
        history = ppo_iterations(
            algo,
            config.iterations,
            config.minutes * 60 if config.minutes else None,
            f"policy {config.dataset}",
            progress,
        )
        env = algo.env_runner.env.unwrapped
        # the local EnvRunner's module, synced from the learner after each update
        return PPORun(net=algo.get_module().net, graph=env.graph, dataset_name=env.dataset_name, history=history)
    finally:
        if algo is not None:
            algo.stop()
        torch.set_num_threads(previous_threads)


def save_policy_folder(
    folder: Path,
    net: Any,
    meta: PolicyMeta,
    world_model_path: str | Path | None,
    reasoner_path: str | Path | None = None,
) -> Path:
    """Write the self-contained checkpoint: weights and config.json, with the world model and the graph
    reasoner beside them when the dataset has them (and none left from an earlier training otherwise)."""
    from reverie.agents.path_policy.bundle import REASONER_FILE, WORLD_MODEL_FILE
    from reverie.agents.path_policy.net import save_policy
    from reverie.atomic import atomic_copy

    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((world_model_path, WORLD_MODEL_FILE), (reasoner_path, REASONER_FILE)):
        if source:
            atomic_copy(source, folder / name)
        else:
            (folder / name).unlink(missing_ok=True)
    return save_policy(net, folder, meta=meta)


def attach_reasoner(folder: str | Path, dataset: Any, reasoner_file: str | Path) -> PolicyBundle:
    """Put a trained graph reasoner into an existing policy folder and refit the arbiter on dev (weights
    and temperature), so the next `reverie ask`, `reverie eval` and /v1/query rank with it."""
    from reverie.agents.path_policy.bundle import REASONER_FILE, load_bundle
    from reverie.agents.path_policy.evaluate import fit_arbiter
    from reverie.agents.path_policy.net import read_policy_meta, save_policy
    from reverie.atomic import atomic_copy
    from reverie.models.graph_reasoner import GraphReasoner

    folder = Path(folder)
    if GraphReasoner.load(reasoner_file).entities != list(read_policy_meta(folder).entities):
        raise ValueError(f"the reasoner {reasoner_file} was trained on a different graph than the policy in {folder}")
    atomic_copy(reasoner_file, folder / REASONER_FILE)
    bundle = load_bundle(folder, dataset)
    fit_arbiter(bundle, dataset)
    save_policy(bundle.net, folder, meta=bundle.meta)
    return bundle


def train_policy(
    settings: Any,
    config: PolicyTrainConfig,
    progress: Callable[[dict[str, Any]], None] | None = None,
    message: Callable[[str], None] | None = None,
) -> Path:
    """Train, save and tune the policy of `config.dataset`; returns its folder (policy_dir).

    When the walks need a world model (shaping or imagined edges) the dataset's cached one is used,
    trained first when missing (`config.world_model`); it is copied into the policy folder, and so is
    the dataset's graph reasoner when `reverie train reasoner` made one. The arbiter is then fit on dev.
    `message` hears what happens besides the iterations (the world model being trained).
    Ray must already be initialised by the caller.
    """
    from reverie.agents.path_policy.bundle import load_bundle
    from reverie.agents.path_policy.evaluate import fit_arbiter
    from reverie.data.kg import load_dataset
    from reverie.models.world_model import ensure_world_model

    data = load_dataset(config.dataset)
    world_model_path = None
    if config.env.needs_world_model:
        world_model_path = ensure_world_model(settings.home, data, config.world_model, message or log.info)
    reasoner = settings.paths.reasoner(data.name)
    shaping_reasoner = None
    if config.env.shaping != 0.0 and config.env.shaper == "reasoner":
        if not reasoner.is_file():
            raise FileNotFoundError(
                f"shaping by the reasoner needs {reasoner}: run `reverie train reasoner --dataset {data.name}` first"
            )
        shaping_reasoner = reasoner
    from reverie.runs import RunLog

    run_log = RunLog(settings.home, "policy", data.name)  # the web page's curve, written as it trains
    run = run_ppo(config, world_model_path, run_log.and_then(progress), shaping_reasoner)
    last = run.history[-1]
    meta = PolicyMeta(
        dataset=run.dataset_name,
        dataset_arg=str(config.dataset),
        env=config.env,
        envs=config.envs,
        seed=config.seed,
        iterations=len(run.history),
        env_steps=last["env_steps"],
        final_return_mean=None if math.isnan(last["episode_return_mean"]) else last["episode_return_mean"],
        seconds=last["elapsed"],
        entities=list(run.graph.id2entity),
        relations=list(run.graph.id2relation),
    )
    folder = save_policy_folder(
        settings.paths.policy(run.dataset_name),
        run.net,
        meta,
        world_model_path,
        reasoner if reasoner.is_file() else None,
    )
    bundle = load_bundle(folder, data)
    if bundle.world_model is not None or bundle.reasoner is not None:
        from reverie.agents.path_policy.net import save_policy

        fit_arbiter(bundle, data)
        save_policy(run.net, folder, meta=bundle.meta)
    return folder
