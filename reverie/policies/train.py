"""Train a path policy with RLlib PPO (new API stack) on KGPathVectorEnv.

The env is natively vectorised: with `gym_env_vectorize_mode="vector_entry_point"` RLlib calls
`KGPathVectorEnv(env_ctx | {"num_envs": num_envs_per_env_runner})`, so ONE env object steps all
`num_envs` walks with numpy. Sampling and learning both run in the calling process
(num_env_runners=0, num_learners=0); RLlib's per-step Python work is the limit, not the env.

The caller initialises Ray. The trained net is saved as a plain torch state dict + config.json
(reverie.policies.net.save_policy) under settings.home / "policies" / <dataset name>, loadable
without Ray by `reverie.policies.net.load_policy`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

log = logging.getLogger(__name__)

# PPO defaults for these short, sparse-reward episodes. Overridable via `ppo=` in train_policy.
PPO_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "gamma": 1.0,  # fixed horizon, reward at the last step only
    "lambda_": 0.95,
    "entropy_coeff": 0.05,  # MINERVA's beta
    "vf_loss_coeff": 0.5,
    "clip_param": 0.2,
    "vf_clip_param": 1.0,  # returns lie in [0, 1 + shaping]
    "kl_coeff": 0.0,
    "num_epochs": 4,
    "batches_per_iteration": 8,  # train batch = num_envs * hops * this
    "minibatch_size": 1024,
}


# What `reverie train policy` walks with unless told otherwise (env_options / model override):
# exact-target reward shaped by the world model, as MultiHopKG; action dropout for exploration;
# relation-only policy features, as MINERVA on UMLS and Kinship.
ENV_DEFAULTS: dict[str, Any] = {"shaping": 1.0, "action_dropout": 0.1, "imagined_edges": 0}
WORLD_MODEL_DEFAULTS: dict[str, Any] = {"model": "complex", "dim": 200, "epochs": 200}


def ensure_world_model(settings: Any, dataset: str, progress: Callable[[str], None] | None = None, **train_args: Any) -> Path:
    """The cached world model of `dataset` (settings.home/world_models/<name>.pt), trained on its
    walkable graph first when missing. Returns its path."""
    from reverie.dreams.world_model import WorldModel
    from reverie.graph_store.datasets import load_dataset
    from reverie.policies.bundle import world_model_cache

    data = load_dataset(dataset)
    path = world_model_cache(settings, data.name)
    if not path.is_file():
        args = dict(WORLD_MODEL_DEFAULTS)
        args.update(train_args)
        if progress is not None:
            progress(f"training the world model of {data.name} ({args['model']}, {args['epochs']} epochs) ...")
        WorldModel.train(data, **args).save(path)
    return path


def tune_arbiter_weight(bundle: Any, dataset: Any, weights=(1.0, 0.3, 3.0, 0.1, 0.0), beam: int | None = None) -> float:
    """The weight of path evidence against the world model with the best MRR on the dev split
    (1.0 when there is no dev split or no world model; on a tie, the earlier weight in `weights`)."""
    from reverie.policies.evaluate import DEFAULT_BEAM, evaluate_bundle

    beam = beam or DEFAULT_BEAM
    if bundle.world_model is None or not dataset.dev:
        return 1.0
    best, best_mrr = 1.0, -1.0
    for w in weights:
        bundle.meta["arbiter_weight"] = w
        mrr = evaluate_bundle(bundle, dataset, split="dev", beam=beam)["mrr"]
        if mrr > best_mrr:
            best, best_mrr = w, mrr
    bundle.meta["arbiter_weight"] = best
    return best


def policy_dir(settings: Any, dataset_name: str) -> Path:
    """Where the policy of `dataset_name` lives: settings.home / "policies" / <name>."""
    return Path(settings.home) / "policies" / dataset_name


def _dataset_name(dataset: str) -> str:
    """The KGDataset name load_dataset would give, without loading the dataset."""
    from reverie.graph_store.datasets import BUILTIN, PYKEEN_BUNDLED

    key = dataset.strip().lower()
    if key == BUILTIN:
        return BUILTIN
    if key in PYKEEN_BUNDLED:
        return PYKEEN_BUNDLED[key]
    path = Path(dataset).expanduser()
    return path.name if path.is_dir() else key


def build_ppo_config(
    dataset: str,
    num_envs: int = 256,
    hops: int = 3,
    seed: int = 0,
    env_options: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    ppo: Mapping[str, Any] | None = None,
):
    """The RLlib PPOConfig used by `train_policy` (exposed for benchmarks and tests)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from reverie.policies.env import KGPathVectorEnv
    from reverie.policies.module import PathPolicyModule

    hp = dict(PPO_DEFAULTS)
    hp.update(ppo or {})
    batches = int(hp.pop("batches_per_iteration"))
    minibatch = int(hp.pop("minibatch_size"))
    num_epochs = int(hp.pop("num_epochs"))
    train_batch = num_envs * hops * batches
    env_config = {"dataset": dataset, "hops": hops, "seed": seed, **dict(env_options or {})}
    return (
        PPOConfig()
        .environment(env=KGPathVectorEnv, env_config=env_config)
        .framework("torch")
        .env_runners(
            num_env_runners=0,
            num_envs_per_env_runner=num_envs,  # handed to KGPathVectorEnv as config["num_envs"]
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=hops * batches,
        )
        .learners(num_learners=0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=PathPolicyModule, model_config=dict(model or {})))
        .training(
            train_batch_size_per_learner=train_batch,
            minibatch_size=min(minibatch, train_batch),
            num_epochs=num_epochs,
            **hp,
        )
        .reporting(metrics_num_episodes_for_smoothing=max(num_envs * batches, 100))
        .debugging(seed=seed, log_level="ERROR")
    )


def train_policy(
    settings: Any,
    dataset: str,
    iterations: int,
    num_envs: int = 256,
    hops: int = 3,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    *,
    env_options: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    ppo: Mapping[str, Any] | None = None,
    world_model_args: Mapping[str, Any] | None = None,
    max_seconds: float | None = None,
) -> Path:
    """Train a PathPolicyModule with PPO for `iterations` algo.train() calls; returns the checkpoint folder.

    progress(info) is called after every iteration with keys: iteration, iterations, env_steps,
    env_steps_per_s (sampled env steps / wall time of that train() call, sampling + learning),
    episode_return_mean, seconds (that train() call), sample_seconds and learn_seconds (RLlib's
    smoothed timers), sample_steps_per_s (env steps / sample_seconds), elapsed.
    env_options: KGPathVectorEnv config over ENV_DEFAULTS (shaping, action_dropout, imagined_edges,
    any_answer, max_actions, ...). With shaping or imagined edges the dataset's world model is
    trained first when not cached (ensure_world_model), and copied into the policy folder.
    model: PathPolicyNet config (entity_dim, relation_dim, lstm_dim, state_dim, experts, use_entities).
    ppo: overrides of PPO_DEFAULTS.
    world_model_args: WorldModel.train arguments over WORLD_MODEL_DEFAULTS, when one is trained.
    max_seconds: stop after the iteration that passes this much PPO time (iterations stays the cap).
    Ray must already be initialised by the caller.
    """
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        ENV_RUNNER_SAMPLING_TIMER,
        EPISODE_RETURN_MEAN,
        LEARNER_UPDATE_TIMER,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        TIMERS,
    )

    from reverie.policies.net import save_policy

    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    options = dict(ENV_DEFAULTS)
    options.update(env_options or {})
    world_model_path = options.get("world_model_path")
    if not world_model_path and (float(options.get("shaping", 0)) or int(options.get("imagined_edges", 0))):
        world_model_path = options["world_model_path"] = str(ensure_world_model(settings, dataset, log.info, **dict(world_model_args or {})))
    env_options = options
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = build_ppo_config(dataset, num_envs=num_envs, hops=hops, seed=seed, env_options=env_options, model=model, ppo=ppo)
    algo = None
    history: list[dict[str, Any]] = []
    try:
        algo = config.build_algo()
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
            log.info("policy %s iteration %d/%d: %.0f env steps/s, return %.3f", dataset, it, iterations,
                     info["env_steps_per_s"], info["episode_return_mean"])
            if progress is not None:
                progress(info)
            if max_seconds is not None and info["elapsed"] >= max_seconds:
                break

        module = algo.get_module()  # the local EnvRunner's copy, synced from the learner after each update
        env = algo.env_runner.env.unwrapped
        graph = env.graph
        name = getattr(env, "dataset_name", None) or _dataset_name(dataset)
        meta = {
            "dataset": name,
            "dataset_arg": str(dataset),
            "hops": hops,
            "max_actions": int(graph.max_actions),
            "num_envs": num_envs,
            "iterations": len(history),
            "seed": seed,
            "env_options": {k: v for k, v in env_options.items()
                            if k != "world_model_path" and isinstance(v, (str, int, float, bool, type(None)))},
            "graph_seed": int(env_options.get("graph_seed", 0)),
            "env_steps": history[-1]["env_steps"],
            "final_return_mean": history[-1]["episode_return_mean"],
            "seconds": history[-1]["elapsed"],
            "entities": list(graph.id2entity),
            "relations": list(graph.id2relation),
        }
        folder = policy_dir(settings, name)
        folder.mkdir(parents=True, exist_ok=True)
        if world_model_path:  # the policy folder is self-contained: weights, config, world model
            import shutil

            from reverie.policies.bundle import WORLD_MODEL_FILE

            tmp = folder / f".{WORLD_MODEL_FILE}.tmp"
            shutil.copyfile(world_model_path, tmp)
            tmp.replace(folder / WORLD_MODEL_FILE)
        elif (folder / "world_model.pt").exists():
            (folder / "world_model.pt").unlink()
        save_policy(module.net, folder, meta=meta)
        if world_model_path:
            from reverie.graph_store.datasets import load_dataset
            from reverie.policies.bundle import load_bundle

            data = load_dataset(dataset)
            meta["arbiter_weight"] = tune_arbiter_weight(load_bundle(folder, data), data)
            save_policy(module.net, folder, meta=meta)
    finally:
        if algo is not None:
            algo.stop()
        torch.set_num_threads(previous_threads)
    return folder
