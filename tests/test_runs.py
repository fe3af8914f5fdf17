"""Training-run logs (reverie.runs): what the web page's curves read, without Ray."""

import json

import pytest

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
