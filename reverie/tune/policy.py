"""`reverie tune policy`: sweep the path policy's PPO settings (learning rate, entropy bonus, hops,
test beam) with Ray Tune's ASHA, against the current defaults (always the first trial).

Each trial trains a policy with PPO in its own process, reporting the dev split's MRR every
`report_every` iterations (ASHA stops the weak ones early), and saves its policy at the end. The
dataset's world model is trained once, before the trials, and shared.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reverie.agents.path_policy.config import PolicyTrainConfig
from reverie.errors import ReverieError

LR_BOUNDS = (1e-4, 3e-3)
ENTROPY_BOUNDS = (0.005, 0.2)
HOPS = (2, 3)
BEAMS = (64, 128, 256)
METRICS = ("policy_mrr", "mrr")


@dataclass(frozen=True)
class PolicySweepConfig:
    dataset: str = "umls"
    samples: int = 8
    """Trials, the defaults' trial included."""
    iterations: int = 60
    """PPO iterations a trial may run."""
    report_every: int = 10
    """PPO iterations between dev evaluations (ASHA's rungs)."""
    metric: str = "policy_mrr"
    """What ASHA keeps: the dev MRR of the policy's paths alone ("policy_mrr"), or of Reverie's
    answers, path evidence times the world model ("mrr")."""
    base: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    """The defaults the sweep starts from and compares with."""
    seed: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.samples < 1 or self.iterations < 1 or self.report_every < 1:
            raise ReverieError("--samples, --iterations and --report-every must be at least 1")
        if self.metric not in METRICS:
            raise ReverieError(f"unknown metric {self.metric!r}: use one of {', '.join(METRICS)}")


def _trial_config(config: dict) -> PolicyTrainConfig:
    base = PolicyTrainConfig(dataset=config["dataset"], seed=config["seed"])
    return base.replace(
        env={**config["env"], "hops": int(config["hops"])},
        net=config["net"],
        ppo={**config["ppo"], "lr": float(config["lr"]), "entropy_coeff": float(config["entropy_coeff"])},
    )


def policy_trainable(config: dict) -> None:
    """One trial: PPO at the trial's settings, dev MRR reported every `report_every` iterations."""
    import torch
    from ray import tune

    from reverie.agents.path_policy.bundle import PolicyBundle
    from reverie.agents.path_policy.config import PolicyMeta
    from reverie.agents.path_policy.evaluate import evaluate_bundle
    from reverie.agents.path_policy.train import build_ppo_config, save_policy_folder
    from reverie.agents.training import ppo_iterations
    from reverie.data.kg import load_dataset
    from reverie.models.world_model import WorldModel

    torch.set_num_threads(1)
    train = _trial_config(config)
    data = load_dataset(train.dataset)
    world_model = WorldModel.load(config["world_model_path"])
    algo = build_ppo_config(train, config["world_model_path"]).build_algo()
    try:
        done = 0
        while done < config["iterations"]:
            history = ppo_iterations(algo, min(config["report_every"], config["iterations"] - done), None, "sweep")
            done += len(history)
            env = algo.env_runner.env.unwrapped
            meta = PolicyMeta(
                dataset=env.dataset_name,
                dataset_arg=train.dataset,
                env=train.env,
                envs=train.envs,
                seed=train.seed,
                iterations=done,
            )
            bundle = PolicyBundle(net=algo.get_module().net, graph=env.graph, world_model=world_model, meta=meta)
            result = evaluate_bundle(bundle, data, split="dev", beam=int(config["beam"]))
            # saved at every report, so a trial ASHA stops early can still be measured on test
            folder = Path(tune.get_context().get_trial_dir()) / "policy"
            save_policy_folder(folder, bundle.net, meta, config["world_model_path"])
            tune.report(
                {
                    "mrr": result["mrr"],
                    "policy_mrr": result["policy"]["mrr"],
                    "ppo_iterations": done,
                    "episode_return_mean": history[-1]["episode_return_mean"],
                    "policy_folder": str(folder),
                }
            )
    finally:
        algo.stop()


def sweep_policy(settings: Any, sweep: PolicySweepConfig, verbose: int = 1):
    """Run the ASHA sweep on the running Ray; the first trial is the defaults. Returns the ResultGrid."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from reverie.data.kg import load_dataset
    from reverie.models.world_model import ensure_world_model
    from reverie.tune.common import trial_dirname

    base = sweep.base
    data = load_dataset(sweep.dataset)
    world_model_path = str(ensure_world_model(settings.home, data, base.world_model))
    fixed = {
        "dataset": sweep.dataset,
        "seed": sweep.seed,
        "iterations": sweep.iterations,
        "report_every": sweep.report_every,
        "world_model_path": world_model_path,
        "env": dataclasses.asdict(base.env),
        "net": dataclasses.asdict(base.net),
        "ppo": dataclasses.asdict(base.ppo),
    }
    space = {
        **fixed,
        "lr": tune.loguniform(*LR_BOUNDS),
        "entropy_coeff": tune.loguniform(*ENTROPY_BOUNDS),
        "hops": tune.choice(list(HOPS)),
        "beam": tune.choice(list(BEAMS)),
    }
    defaults = {"lr": base.ppo.lr, "entropy_coeff": base.ppo.entropy_coeff, "hops": base.env.hops, "beam": 256}
    reports = max(1, -(-sweep.iterations // sweep.report_every))
    tuner = tune.Tuner(
        tune.with_resources(policy_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            trial_dirname_creator=trial_dirname,
            metric=sweep.metric,
            mode="max",
            num_samples=sweep.samples,
            reuse_actors=False,
            scheduler=ASHAScheduler(
                time_attr="training_iteration", max_t=reports, grace_period=max(1, reports // 3), reduction_factor=2
            ),
            search_alg=tune.search.BasicVariantGenerator(points_to_evaluate=[defaults], random_state=sweep.seed),
        ),
        run_config=tune.RunConfig(
            name=sweep.name or f"policy-{data.name}", storage_path=str(settings.paths.tune), verbose=verbose
        ),
    )
    return tuner.fit()


def compare_with_defaults(grid, sweep: PolicySweepConfig) -> dict[str, Any]:
    """Test-split ranking (beam as the trial chose) of the best trial and of the defaults' trial
    (each as its last report left it: ASHA may have stopped either early)."""
    from reverie.agents.path_policy.bundle import load_bundle
    from reverie.agents.path_policy.evaluate import evaluate_bundle
    from reverie.data.kg import load_dataset

    finished = [r for r in grid if r.metrics and r.metrics.get("policy_folder")]
    if not finished:
        raise ReverieError("no trial of the sweep reported")
    data = load_dataset(sweep.dataset)
    defaults = next((r for r in grid if _is_defaults(r.config, sweep)), None)
    best = max(finished, key=lambda r: r.metrics[sweep.metric])
    out = {}
    for label, result in (("best", best), ("defaults", defaults)):
        if result is None or not result.metrics.get("policy_folder"):
            out[label] = None
            continue
        test = evaluate_bundle(
            load_bundle(result.metrics["policy_folder"], data), data, split="test", beam=int(result.config["beam"])
        )
        out[label] = {
            "config": {k: result.config[k] for k in ("lr", "entropy_coeff", "hops", "beam")},
            "dev": result.metrics[sweep.metric],
            "test_mrr": test["mrr"],
            "test_policy_mrr": test["policy"]["mrr"],
        }
    return out


def _is_defaults(config: dict, sweep: PolicySweepConfig) -> bool:
    base = sweep.base
    return (
        config["lr"] == base.ppo.lr
        and config["entropy_coeff"] == base.ppo.entropy_coeff
        and config["hops"] == base.env.hops
        and config["beam"] == 256
    )
