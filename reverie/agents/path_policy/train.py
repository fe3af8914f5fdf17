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
import tempfile
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
    config: PolicyTrainConfig,
    world_model_path: str | Path | None = None,
    reasoner_path: str | Path | None = None,
    teacher_demos: str | Path | None = None,
):
    """The RLlib PPOConfig `run_ppo` trains with (exposed for benchmarks and tests); with
    `teacher_demos` (a Demonstrations file), PPO's loss also pulls towards the reasoner's paths."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from reverie.agents.path_policy.env import KGPathVectorEnv
    from reverie.agents.path_policy.module import PathPolicyModule

    hops, envs = config.env.hops, config.envs
    training = config.ppo.rllib_training(envs, hops)
    if teacher_demos is not None and config.teacher.weight > 0:
        from reverie.agents.path_policy.module import teacher_ppo_learner

        per_iteration = envs * hops * config.ppo.batches_per_iteration
        training["learner_class"] = teacher_ppo_learner()
        training["learner_config_dict"] = {
            "teacher_demos": str(teacher_demos),
            "teacher_weight": config.teacher.weight,
            "teacher_anneal_steps": int(config.teacher.anneal * config.iterations * per_iteration),
            "dataset": str(config.dataset),
            "max_actions": config.env.max_actions,
            "graph_seed": config.env.graph_seed,
            "seed": config.seed,
        }
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
        .training(**training)
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
    start: Any | None = None,
    teacher_demos: str | Path | None = None,
) -> PPORun:
    """Train with PPO for `config.iterations` algo.train() calls, or until `config.minutes` pass;
    `progress` as in `ppo_iterations`. `start` (a PathPolicyNet, e.g. cloned from the reasoner) gives
    the first weights; `teacher_demos` adds the reasoner's pull (build_ppo_config)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    algo = None
    try:
        algo = build_ppo_config(config, world_model_path, reasoner_path, teacher_demos).build_algo()
        if start is not None:
            state = {f"net.{k}": v for k, v in start.state_dict().items()}
            algo.learner_group.set_weights({DEFAULT_MODULE_ID: state})
            algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group, inference_only=True)
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

    teacher = config.teacher.kind
    if teacher == "auto":
        teacher = "reasoner" if reasoner.is_file() else "none"
    if teacher == "reasoner" and not reasoner.is_file():
        raise FileNotFoundError(
            f"the reasoner teaches the policy only once there is one: run `reverie train reasoner --dataset {data.name}` first"
        )
    start, demos_file = None, None
    with tempfile.TemporaryDirectory() as scratch:
        if teacher == "reasoner":
            start, demos_file = teach(config, data, reasoner, Path(scratch), message or log.info)
        run_log = RunLog(settings.home, "policy", data.name)  # the web page's curve, written as it trains
        run = run_ppo(config, world_model_path, run_log.and_then(progress), shaping_reasoner, start, demos_file)
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
        teacher=teacher,
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


def teach(
    config: PolicyTrainConfig, data: Any, reasoner_file: Path, scratch: Path, message: Callable[[str], None]
) -> tuple[Any, Path]:
    """The reasoner's demonstrations on sampled training queries and a policy cloned from them: the net
    PPO starts from, and the demonstrations' file its teacher term reads."""
    import numpy as np

    from reverie.agents.path_policy.learner import clone, demonstrations
    from reverie.agents.path_policy.net import PathPolicyNet
    from reverie.agents.path_policy.walkgraph import WalkGraph
    from reverie.models.graph_reasoner import GraphReasoner

    graph = WalkGraph.from_dataset(data, max_actions=config.env.max_actions, seed=config.env.graph_seed)
    if config.env.imagined_edges:
        raise ValueError("the reasoner cannot teach a policy that walks imagined edges: use --teacher none")
    train = graph.encode(data.train, skip_unknown=True)
    R = graph.num_relations
    queries = np.unique(np.concatenate([train, np.stack([train[:, 2], train[:, 1] + R, train[:, 0]], 1)]), axis=0)
    rng = np.random.default_rng(config.seed)
    queries = queries[rng.permutation(len(queries))[: config.teacher.queries]]
    message(f"the reasoner explains {len(queries)} training answers (its paths teach the policy)")
    demos = demonstrations(GraphReasoner.load(reasoner_file), graph, queries, config.env.hops, config.teacher.paths)
    torch.manual_seed(config.seed)
    net = PathPolicyNet(graph.num_entities, graph.num_relation_ids, config.net)
    if config.teacher.clone_epochs:
        losses = clone(net, demos, epochs=config.teacher.clone_epochs, seed=config.seed)
        message(f"cloned {len(demos)} reasoner paths: cross-entropy {losses[0]:.2f} -> {losses[-1]:.2f}")
    return net, demos.save(scratch / "demonstrations.npz")
