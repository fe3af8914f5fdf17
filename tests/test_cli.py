"""The `reverie` command as a user runs it: bad input is one line on stderr and exit code 2."""

import json
import os
import subprocess
import sys

import pytest


def reverie(*args, home, timeout=300):
    # As a user's shell has it: no Ray auth mode (this session's own Ray may have set one here).
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, "REVERIE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "reverie.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("reverie: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", ""], "question"),
        (["ask", "   "], "the question is empty"),
        (["ingest", "/nonexistent/facts.tsv"], "no such file"),
        (["ingest", "--dataset", "freebase"], "unknown dataset 'freebase'"),
        (["ingest"], "exactly one of PATH, --dataset NAME or --images"),
        (["ingest", "--images", "/nonexistent/images.jsonl"], "no such file"),
        (["ask", "--image", "/nonexistent/cup.png", "What happens if I drop this?"], "no such file"),
        (["ask", "--image", __file__, "What happens if I drop this?"], "not an image PIL can read"),
        (["train", "clip", "--backbone", "vgg"], "unknown image backbone 'vgg'"),
        (["train", "clip", "--epochs", "0"], "epochs must be at least 1"),
        (["train", "clip", "--backbone", "resnet", "--image-size", "48"], "multiple of 32"),
        (["eval", "--dataset", "umls"], "no trained policy for 'umls'"),
        (["eval", "--dataset", "freebase"], "unknown dataset 'freebase'"),
        (["train", "policy", "--dataset", "world"], "has no dev or test split"),
        (["train", "policy", "--dataset", "umls", "--iterations", "0"], "iterations must be >= 1, got 0"),
        (["train", "policy", "--dataset", "umls", "--minutes", "0"], "minutes must be positive, got 0.0"),
        (["eval", "--dataset", "umls", "--beam", "0"], "the beam must be at least 1, got 0"),
        (["train", "policy", "--dataset", "umls", "--experts", "0"], "experts must be >= 1, got 0"),
        (
            ["train", "policy", "--dataset", "umls", "--imagined", "2", "--no-world-model"],
            "--imagined needs the world model",
        ),
        (
            ["train", "policy", "--dataset", "umls", "--shaper", "oracle"],
            "shaper must be one of world-model, reasoner, got 'oracle'",
        ),
        (
            ["train", "policy", "--dataset", "umls", "--shaper", "reasoner"],
            "run `reverie train reasoner --dataset umls` first",
        ),
        (
            ["train", "policy", "--dataset", "umls", "--teacher", "reasoner"],
            "--teacher reasoner needs a reasoner: run `reverie train reasoner --dataset umls` first",
        ),
        (["train", "policy", "--dataset", "umls", "--clone-epochs", "-1"], "clone_epochs >= 0"),
        (["learn", "--updates", "0"], "updates must be >= 1, got 0"),
        (["train", "reasoner", "--dataset", "umls", "--max-nodes", "0"], "max_nodes must be at least 1"),
        (["tune", "headline", "--scheduler", "bogus"], "unknown scheduler 'bogus'"),
        (["tune", "headline", "--budget", "0"], "the budget must be at least 1 gradient step"),
        (["tune", "headline", "--samples", "0"], "samples and intervals must be at least 1"),
        (["tune", "headline", "--dataset", "twitter"], "unknown headline dataset 'twitter'"),
        (["tune", "policy", "--dataset", "freebase"], "unknown dataset 'freebase'"),
        (["train", "tuner", "--dataset", "twitter"], "unknown headline dataset 'twitter'"),
        (["train", "tuner", "--iterations", "0"], "iterations, envs and hidden must be >= 1"),
        (["train", "tuner", "--model", "transformer"], "unknown classifier 'transformer'"),
        (["eval", "tuner", "--arms", "oracle"], "unknown arm 'oracle'"),
        (["eval", "tuner"], "no trained tuner"),
        (["eval"], "eval policy needs --dataset"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    result = reverie(*args, home=tmp_path)
    assert result.returncode == 2
    assert message in error_line(result)


def test_malformed_file_stops_before_anything_is_written(tmp_path):
    facts = tmp_path / "facts.tsv"
    facts.write_text("a\tb\tc\nbroken line\n")
    result = reverie("ingest", str(facts), home=tmp_path / "home")
    assert result.returncode == 2
    assert f"{facts}:2: expected 3 columns" in error_line(result)
    assert not (tmp_path / "home" / "graph").exists()


@pytest.mark.ray
def test_ingest_then_ask_end_to_end(tmp_path):
    """A user's whole session in its own Ray: ingest a file, ask, get JSON, and a clear error."""
    facts = tmp_path / "facts.tsv"
    facts.write_text(
        "glass cup\tmade of\tglass\nglass\tis\tbrittle\nbrittle\twhen dropped on a hard floor\tshatters\nglass cup\tfound in\tkitchen\n"
    )
    home = tmp_path / "home"
    ingest = reverie("ingest", str(facts), "--quiet", home=home)
    assert ingest.returncode == 0, ingest.stderr
    assert "4 new of 4 triples" in ingest.stdout

    ask = reverie("ask", "What happens when you drop a glass cup?", "--json", "--no-llm", "--seed", "0", home=home)
    assert ask.returncode == 0, ask.stderr
    # Reverie sets Ray's auth mode for the local Ray it starts: no banner from Ray on each command.
    assert "Token authentication" not in ingest.stderr + ask.stderr
    verdict = json.loads(ask.stdout)
    assert verdict["answer_entity"] == "shatters" and len(verdict["chain"]["steps"]) == 3

    nomatch = reverie("ask", "Quarterly mortgage refinancing schedule for 2031?", "--no-llm", home=home)
    assert nomatch.returncode == 2
    assert "no entity in the graph matches" in error_line(nomatch)

    # small talk names nothing either, but it is answered, not refused
    hello = reverie("ask", "hello!", "--no-llm", home=home)
    assert hello.returncode == 0, hello.stderr
    assert "A: " in hello.stdout and "small talk" in hello.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_train_policy_then_eval_json(tmp_path):
    """`reverie train policy` on a folder dataset prints its progress and a checkpoint; `eval --json`
    gives the field's metrics as fractions, with the policy-only and world-model-only breakdowns."""
    from testkit.datasets import write_toy_dataset

    folder = tmp_path / "toyfamily"
    write_toy_dataset(folder)
    home = tmp_path / "home"
    train = reverie(
        "train",
        "policy",
        "--dataset",
        str(folder),
        "--iterations",
        "2",
        "--hops",
        "2",
        "--envs",
        "32",
        "--experts",
        "2",
        home=home,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    assert "training the world model of toyfamily" in train.stdout
    assert f"policy saved to {home / 'policies' / 'toyfamily'}" in train.stdout
    assert "2/2" in train.stderr  # the per-iteration progress bar
    result = reverie("eval", "--dataset", str(folder), "--json", "--beam", "8", home=home)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["dataset"] == "toyfamily" and metrics["queries"] == 5
    # what the command prints is what the evaluation computes on the checkpoint it saved
    from reverie.agents.path_policy.bundle import load_bundle
    from reverie.agents.path_policy.evaluate import evaluate_bundle
    from reverie.data.kg import load_dataset

    data = load_dataset(str(folder))
    bundle = load_bundle(home / "policies" / "toyfamily", data)
    assert bundle.net.config["experts"] == 2 and bundle.meta.hops == 2 and bundle.meta.envs == 32
    expected = evaluate_bundle(bundle, data, beam=8)
    for part in ("policy", "world_model"):
        assert metrics[part] == pytest.approx(expected[part])
    assert metrics["mrr"] == pytest.approx(expected["mrr"])
    assert metrics["reasoner"] is None and 0.0 <= metrics["ece"] <= 1.0

    # a graph reasoner trained afterwards joins the policy's arbiter: a fourth ranking in eval
    reason = reverie(
        "train",
        "reasoner",
        "--dataset",
        str(folder),
        "--epochs",
        "3",
        "--layers",
        "2",
        "--dim",
        "16",
        "--heads",
        "2",
        home=home,
        timeout=600,
    )
    assert reason.returncode == 0, reason.stderr
    assert f"reasoner saved to {home / 'reasoners' / 'toyfamily.pt'}" in reason.stdout
    assert f"added to the policy in {home / 'policies' / 'toyfamily'}" in reason.stdout
    assert "dev_mrr" in reason.stderr  # the progress bar
    result = reverie("eval", "--dataset", str(folder), "--json", "--beam", "8", home=home)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    bundle = load_bundle(home / "policies" / "toyfamily", data)
    assert bundle.reasoner is not None
    expected = evaluate_bundle(bundle, data, beam=8)
    assert metrics["reasoner"] == pytest.approx(expected["reasoner"]) and metrics["ece"] == pytest.approx(
        expected["ece"]
    )
    assert metrics["mrr"] == pytest.approx(expected["mrr"])
    text = reverie("eval", "--dataset", str(folder), "--beam", "8", home=home)  # the same, as text
    assert text.returncode == 0 and "world model alone" in text.stdout and "MRR" in text.stdout
    assert "reasoner alone" in text.stdout and "calibration error" in text.stdout
    bad = reverie("train", "reasoner", "--dataset", str(folder), "--hide", "everything", home=home)
    assert bad.returncode == 2 and "hide must be one of fact, relation" in error_line(bad)


@pytest.mark.ray
@pytest.mark.slow
def test_train_tuner_then_eval_it_against_the_schedule(tmp_path):
    """`reverie train tuner` shows its progress and saves the agent; `eval tuner --json` compares it
    with the plain schedule on the same seeds and budget."""
    home = tmp_path / "home"
    small = ["--dataset", "news", "--budget", "20"]
    train = reverie(
        "train", "tuner", *small, "--intervals", "2", "--iterations", "1", "--envs", "2", home=home, timeout=600
    )
    assert train.returncode == 0, train.stderr
    assert f"tuner saved to {home / 'tuner'}" in train.stdout and "1/1" in train.stderr
    result = reverie(
        "eval", "tuner", *small, "--arms", "cosine", "agent", "--seeds", "2", "--json", home=home, timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [a["arm"] for a in report["arms"]] == ["cosine", "agent"]
    assert all(a["seeds"] == 2 and a["grad_steps"] == 20 for a in report["arms"])
