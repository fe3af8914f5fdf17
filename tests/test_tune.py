"""Ray Tune sweeps on the session's local Ray, on tiny budgets: every scheduler of the headline
sweep, and the path-policy sweep against its defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reverie.agents.lr_control.trainees.headline import HeadlineConfig
from reverie.config import Settings
from reverie.tune.headline import LR_BOUNDS, SCHEDULERS, WD_BOUNDS, HeadlineSweepConfig, sweep_headline, sweep_summary

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TINY = HeadlineConfig(dataset="news", budget=40, batch_size=32, train_subset=500)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_a_headline_sweep_runs_with_each_scheduler(scheduler, ray_cluster, headline_home):
    settings = Settings(home=headline_home)
    sweep = HeadlineSweepConfig(scheduler=scheduler, samples=3, headline=TINY, intervals=5, seed=1)
    grid = sweep_headline(settings, sweep, verbose=0)
    assert len(grid) == 3 and not grid.errors
    frames = [r.metrics_dataframe for r in grid]
    for frame in frames:  # every perturbation stayed inside the search space
        assert frame["lr"].between(*LR_BOUNDS).all() and frame["weight_decay"].between(*WD_BOUNDS).all()
        assert frame["grad_steps"].is_monotonic_increasing or scheduler != "asha"
    summary = sweep_summary(grid, sweep)
    assert summary["trials"] == 3
    step = TINY.budget // sweep.intervals
    assert summary["grad_steps"] == sum(len(f) for f in frames) * step
    assert TINY.budget <= summary["grad_steps"] <= 3 * TINY.budget + 3 * step  # a clone re-runs at most an interval
    experiment = grid.experiment_path
    exploits = Path(experiment, "pbt_global.txt")
    if scheduler == "asha":
        assert (
            summary["grad_steps"] < 3 * TINY.budget or min(len(f) for f in frames) == sweep.intervals
        )  # stopped early, or all were good
        assert not exploits.exists()
    else:  # Tune's own log of the population: weak trials took a strong one's weights and moved its learning rate
        events = [json.loads(line) for line in exploits.read_text().splitlines()]
        assert events
        for _, _, _, _, source, moved in events:  # PBT always perturbs; PB2 keeps the config until its GP has data
            assert scheduler == "pb2" or (moved["lr"], moved["weight_decay"]) != (source["lr"], source["weight_decay"])
    assert experiment.startswith(str(headline_home / "tune"))
    assert list((headline_home / "tune").rglob("events.out.tfevents*"))  # TensorBoard logs
    assert all(Path(r.path).name.startswith("trial-") and Path(r.path).parent == Path(experiment) for r in grid)


def test_the_policy_sweep_compares_its_best_trial_with_the_defaults(ray_cluster, tmp_path):
    from reverie.agents.path_policy.config import PolicyTrainConfig
    from reverie.tune.policy import BEAMS, PolicySweepConfig, compare_with_defaults, sweep_policy
    from testkit.datasets import write_toy_dataset

    folder = tmp_path / "toyfamily"
    write_toy_dataset(folder)
    base = PolicyTrainConfig(envs=32).replace(world_model={"dim": 16, "epochs": 5})
    sweep = PolicySweepConfig(dataset=str(folder), samples=2, iterations=2, report_every=1, base=base)
    grid = sweep_policy(Settings(home=tmp_path / "home"), sweep, verbose=0)
    assert len(grid) == 2 and not grid.errors
    defaults = [r for r in grid if r.config["lr"] == base.ppo.lr and r.config["beam"] == 256]
    assert len(defaults) == 1  # the first trial is the current defaults
    compared = compare_with_defaults(grid, sweep)
    assert compared["defaults"]["config"]["lr"] == base.ppo.lr
    # the best is the trial with the highest dev figure, and its test figures are its own policy's
    assert compared["best"]["dev"] == max(r.metrics[sweep.metric] for r in grid)
    assert 0.0 < compared["best"]["test_mrr"] <= 1.0 and compared["best"]["config"]["beam"] in BEAMS
    assert set(compared["best"]) >= {"test_mrr", "test_policy_mrr"}
