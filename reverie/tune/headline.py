"""`reverie tune headline`: sweep the headline classifier's learning rate, weight decay, hidden size
and dropout with Ray Tune's ASHA, PopulationBasedTraining or PB2.

Every trial is one HeadlineRun of the same budget, reporting after each of `intervals` equal
intervals (ASHA's rungs and PBT's perturbation points) and checkpointing its weights and optimiser
every time, so PBT's exploit step copies real weights. PBT perturbs and PB2 searches the learning
rate and weight decay within the search space's bounds; hidden size and dropout stay what the trial
drew (an exploiting trial takes them with the weights it copies).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reverie.agents.lr_control.trainees.headline import HeadlineConfig
from reverie.errors import ReverieError

SCHEDULERS = ("asha", "pbt", "pb2")
LR_BOUNDS = (1e-4, 3e-2)
WD_BOUNDS = (1e-6, 1e-2)
HIDDEN = (64, 128, 256, 512)
DROPOUT_BOUNDS = (0.0, 0.5)
CHECKPOINT_FILE = "run.pt"


@dataclass(frozen=True)
class HeadlineSweepConfig:
    """One sweep: the scheduler, how many trials, and the run every trial makes."""

    scheduler: str = "asha"
    """"asha", "pbt" or "pb2"."""
    samples: int = 8
    """Trials (PBT and PB2: the population)."""
    headline: HeadlineConfig = field(default_factory=HeadlineConfig)
    """Each trial's run; its hidden size and dropout are the sweep's to set."""
    intervals: int = 10
    """Reports per trial: the budget is cut into this many intervals."""
    seed: int = 0
    """Seeds every trial's run (so trials differ by their hyperparameters alone) and the search."""
    name: str | None = None
    """The sweep's folder under REVERIE_HOME/tune (default: headline-<scheduler>)."""

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ReverieError(f"unknown scheduler {self.scheduler!r}: use one of {', '.join(SCHEDULERS)}")
        if self.samples < 1 or self.intervals < 1:
            raise ReverieError("samples and intervals must be at least 1")
        if self.intervals > self.headline.budget:
            raise ReverieError(f"{self.intervals} intervals do not fit a budget of {self.headline.budget} steps")


def _clip(config: dict) -> dict:
    """PBT's perturbations (x0.8, x1.2) and PB2's rescaled proposals (a float's hair outside) stay inside the search
    space."""
    config["lr"] = min(max(config["lr"], LR_BOUNDS[0]), LR_BOUNDS[1])
    config["weight_decay"] = min(max(config["weight_decay"], WD_BOUNDS[0]), WD_BOUNDS[1])
    return config


def headline_trainable(config: dict) -> None:
    """One trial: a HeadlineRun at the trial's hyperparameters, reported and checkpointed per interval."""
    import torch
    from ray import tune

    headline = HeadlineConfig(
        **{**config["headline"], "hidden": int(config["hidden"]), "dropout": float(config["dropout"])}
    )
    from reverie.agents.lr_control.trainees.headline import HeadlineRun

    torch.set_num_threads(1)
    config = _clip(dict(config))
    run = HeadlineRun(headline, config["seed"], config["home"])
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            run.load_state_dict(torch.load(Path(folder) / CHECKPOINT_FILE, weights_only=False))
    interval = headline.budget / config["intervals"]
    while run.steps < run.budget:
        target = min(run.budget, round(interval * (round(run.steps / interval) + 1)))
        report = run.advance(target - run.steps, lambda _step: config["lr"], config["weight_decay"])
        metrics = {
            "val_acc": report.val_acc,
            "val_loss": report.val_loss,
            "train_loss": report.train_loss,
            "grad_steps": run.steps,
            "lr": config["lr"],
            "weight_decay": config["weight_decay"],
        }
        if run.steps >= run.budget:
            metrics["test_acc"] = run.test_score()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(run.state_dict(), Path(folder) / CHECKPOINT_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _scheduler(sweep: HeadlineSweepConfig):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if sweep.scheduler == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=sweep.intervals,
            grace_period=max(1, sweep.intervals // 5),
            reduction_factor=3,
        )
    every = max(1, sweep.intervals // 5)
    if sweep.scheduler == "pbt":
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=every,
            hyperparam_mutations={"lr": tune.loguniform(*LR_BOUNDS), "weight_decay": tune.loguniform(*WD_BOUNDS)},
            custom_explore_fn=_clip,
        )
    from ray.tune.schedulers.pb2 import PB2

    return PB2(
        time_attr="training_iteration",
        perturbation_interval=every,
        hyperparam_bounds={"lr": list(LR_BOUNDS), "weight_decay": list(WD_BOUNDS)},
    )


def sweep_headline(settings: Any, sweep: HeadlineSweepConfig, verbose: int = 1):
    """Run the sweep on the running Ray; returns Tune's ResultGrid (kept under REVERIE_HOME/tune)."""
    from ray import tune

    from reverie.agents.lr_control.trainees.headline import load_splits
    from reverie.tune.common import trial_dirname

    load_splits(str(settings.home), sweep.headline.dataset, sweep.headline.embedder)  # embed once, before the trials
    space = {
        "lr": tune.loguniform(*LR_BOUNDS),
        "weight_decay": tune.loguniform(*WD_BOUNDS),
        "hidden": tune.choice(list(HIDDEN)),
        "dropout": tune.uniform(*DROPOUT_BOUNDS),
        "headline": dataclasses.asdict(sweep.headline),
        "intervals": sweep.intervals,
        "seed": sweep.seed,
        "home": str(settings.home),
    }
    tuner = tune.Tuner(
        tune.with_resources(headline_trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            num_samples=sweep.samples,
            scheduler=_scheduler(sweep),
            reuse_actors=False,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=sweep.name or f"headline-{sweep.scheduler}",
            storage_path=str(settings.paths.tune),
            verbose=verbose,
            stop={"training_iteration": sweep.intervals},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # PBT needs every checkpoint it may exploit
        ),
    )
    return tuner.fit()


def sweep_summary(grid, sweep: HeadlineSweepConfig) -> dict[str, Any]:
    """The best trial (by its final validation accuracy) and the sweep's compute in gradient steps."""
    from reverie.tune.common import reports_run

    finished = [r for r in grid if r.metrics and "test_acc" in r.metrics]
    if not finished:
        raise ReverieError("no trial of the sweep finished its budget")
    best = max(finished, key=lambda r: (r.metrics["val_acc"], -r.metrics["val_loss"]))
    step = sweep.headline.budget / sweep.intervals
    return {
        "val_acc": best.metrics["val_acc"],
        "test_acc": best.metrics["test_acc"],
        "config": {k: best.config[k] for k in ("lr", "weight_decay", "hidden", "dropout")},
        "grad_steps": int(math.ceil(reports_run(grid) * step)),
        "trials": len(grid),
    }
