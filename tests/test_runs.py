"""Training-run logs (reverie.runs): what the web page's curves read, without Ray."""

import json
import logging
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reverie.errors import NotFoundError
from reverie.home import Home
from reverie.runs import RunLog, list_runs, read_run


def test_a_run_log_reads_back_point_by_point_newest_run_first(tmp_path):
    assert list_runs(tmp_path) == []
    first = RunLog(tmp_path, "policy", "umls")
    heard = []
    log = first.and_then(heard.append)
    for i in range(1, 4):
        log({"iteration": i, "episode_return_mean": float("nan") if i == 1 else i / 10, "env_steps": 100 * i})
    assert [p["iteration"] for p in heard] == [1, 2, 3]
    second = RunLog(tmp_path, "tuner", "../tuner")  # a name is never a path
    second({"iteration": 1, "episode_return_mean": 0.5})
    assert second.path.parent == Home(tmp_path).runs
    runs = list_runs(tmp_path)
    assert [r.id for r in runs] == [second.id, first.id]
    assert (runs[1].kind, runs[1].name, runs[1].iterations, runs[1].last["env_steps"]) == ("policy", "umls", 3, 300)
    run = read_run(tmp_path, first.id)
    assert [p["episode_return_mean"] for p in run.points] == [None, 0.2, 0.3]  # NaN is null in JSON


def test_a_line_cut_short_is_skipped_and_bad_ids_are_not_found(tmp_path):
    log = RunLog(tmp_path, "policy", "kinships")
    log({"iteration": 1, "episode_return_mean": 0.1})
    with open(log.path, "a") as handle:
        handle.write('{"iteration": 2, "episode_ret')  # a crash mid-line
    assert [p["iteration"] for p in read_run(tmp_path, log.id).points] == [1]
    (Home(tmp_path).runs / "notes.jsonl").write_text(json.dumps(["not", "a", "run"]) + "\n")
    assert [r.id for r in list_runs(tmp_path)] == [log.id]
    outside = tmp_path / "secret.jsonl"
    outside.write_text(json.dumps({"run": "x"}) + "\n")
    for bad in ("../secret", "nope", "", "notes"):
        with pytest.raises(NotFoundError):
            read_run(tmp_path, bad)


def _scalars(folder):
    """{tag: [(step, value), ...]} from the TensorBoard event files in folder."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_run_writes_tensorboard_scalars_beside_its_log(tmp_path):
    with RunLog(tmp_path, "reasoner", "umls") as run:
        for i in (1, 2, 3):
            run(
                {
                    "iteration": i,
                    "episode_return_mean": float("nan") if i == 2 else i / 10,
                    "env_steps": 100 * i,
                    "loss": {"policy": -i / 4, "value": float("inf") if i == 3 else 2.0 * i},
                    "dataset": "umls",  # not a number: not a scalar
                    "done": i == 3,  # nor a bool
                }
            )
    assert run.events == Home(tmp_path).runs / run.id
    assert len(list(run.events.glob("events.out.tfevents.*"))) == 1
    scalars = _scalars(run.events)
    assert set(scalars) == {"episode_return_mean", "env_steps", "loss/policy", "loss/value"}  # no "iteration"
    assert scalars["episode_return_mean"] == [(1, pytest.approx(0.1)), (3, pytest.approx(0.3))]  # NaN skipped
    assert scalars["env_steps"] == [(1, 100), (2, 200), (3, 300)]
    assert scalars["loss/policy"] == [(1, -0.25), (2, -0.5), (3, -0.75)]
    assert scalars["loss/value"] == [(1, 2.0), (2, 4.0)]  # inf skipped

    tuner = RunLog(tmp_path, "tuner", "mlp")  # never closed, as the trainers leave it: flushed point by point
    tuner({"epoch": 5, "dev_mrr": 0.25})
    tuner({"epoch": 6, "dev_mrr": 0.5})
    counted = RunLog(tmp_path, "policy", "fb15k-237.v1")  # no step field: the points are counted
    counted({"reward": 1.0})
    counted({"reward": 3.0})
    assert _scalars(tuner.events) == {"dev_mrr": [(5, 0.25), (6, 0.5)]}
    assert _scalars(counted.events) == {"reward": [(1, 1.0), (2, 3.0)]}

    assert sorted(r.id for r in list_runs(tmp_path)) == sorted([run.id, tuner.id, counted.id])  # not the folders
    assert [p["iteration"] for p in read_run(tmp_path, run.id).points] == [1, 2, 3]
    with pytest.raises(NotFoundError):
        read_run(tmp_path, f"{run.id}/{run.events.name}")


def test_without_tensorboard_a_run_still_logs_and_warns_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # what an install without tensorboard meets
    run = RunLog(tmp_path, "policy", "umls")
    with caplog.at_level(logging.WARNING, logger="reverie.runs"):
        for i in (1, 2):
            run({"iteration": i, "reward": i / 2})
    run.close()
    assert [r.getMessage().startswith(f"run {run.id}: no TensorBoard events") for r in caplog.records] == [True]
    assert [p["reward"] for p in read_run(tmp_path, run.id).points] == [0.5, 1.0]
    assert not run.events.exists()


def test_importing_runs_imports_no_tensorboard():
    code = "import sys, reverie.runs; print('torch.utils.tensorboard' in sys.modules, 'tensorboard' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
