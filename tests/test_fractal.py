"""The fractal network (reverie/models/fractal.py), its Q&A model and baselines
(reverie/models/fractal_qa.py), the Q&A pairs (reverie/data/qa.py), the home's assistant
(reverie/fractal.py) and `reverie fractal ...`: Ray-free. The server's routes, faces and web view
are tests/test_fractal_serve.py's; the full measures bench/fractal.py's."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from reverie.cli import main
from reverie.data.qa import QAFileError, exact_match, graph_pairs, pairs_from_json, parroted, read_qa_file, token_f1
from reverie.errors import NotFoundError
from reverie.fractal import FractalAssistant
from reverie.models.fractal import FractalConfig, FractalNet, FractalStateError, rebuild_optimizer, spectral_entropy
from reverie.models.fractal_qa import QA_CORES, QASettings, QATraining, load_qa, new_model, save_qa, train_qa

SMALL = {"width": 16, "hidden": 32}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: a second thread only waits on the first (and on a busy machine,
    spins against whatever else runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def regression_task(seed: int = 0, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return x, torch.sin(x @ torch.randn(8, 3, generator=g))


def train_steps(net: FractalNet, steps: int, seed: int = 0) -> list[float]:
    x, y = regression_task(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    net.set_recording(True)
    losses = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randint(0, len(x), (32,), generator=g)
        out, kl = net(x[batch])
        loss = (out - y[batch]).square().mean() + net.config.vae_beta * kl.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if net.after_step():
            optimizer = rebuild_optimizer(optimizer, list(net.parameters()))
        losses.append(float(loss.detach()))
    net.set_recording(False)
    net.eval()
    return losses


# ----------------------------------------------------------------------------- the network


def test_growth_leaves_the_output_as_it_was():
    torch.manual_seed(0)
    net = FractalNet(FractalConfig(input_dim=8, output_dim=3, max_depth=4, max_nodes=10, grow_every=1000, **SMALL))
    train_steps(net, 60)  # weights, attention and co-activation all away from their starting values
    x, _ = regression_task(1)
    for parent in ("root", "root", "first child"):
        node = net.root if parent == "root" else net.root.kids[0]
        before = net(x)[0]
        node.add_child()
        after = net(x)[0]
        assert torch.allclose(before, after, atol=1e-5), (before - after).abs().max()
    assert net.stats().nodes == 4 and net.stats().depth == 3
    # a new child learns: its fan-out has a gradient at once (its fan-in is not zero)
    out, _ = net(x)
    out.square().mean().backward()
    newest = net.root.links[1].fan_out.weight
    assert newest.grad is not None and newest.grad.abs().sum() > 0


def test_a_node_grows_only_past_the_complexity_threshold():
    x, _ = regression_task()
    never = FractalNet(FractalConfig(input_dim=8, output_dim=3, grow_threshold=1.0, grow_every=10, **SMALL))
    train_steps(never, 50)
    assert never.stats().nodes == 1 and not never.events
    eager = FractalNet(
        FractalConfig(input_dim=8, output_dim=3, grow_threshold=0.0, grow_every=10, max_nodes=4, **SMALL)
    )
    train_steps(eager, 50)
    assert eager.stats().nodes == 4 and [e.kind for e in eager.events] == ["grow"] * 3
    assert 0.0 < float(eager.root.complexity) <= 1.0
    # the measure: one direction -> 0, spread over all -> near 1
    line = torch.randn(64, 1) @ torch.randn(1, 16)
    assert float(spectral_entropy(line)) < 0.05
    assert float(spectral_entropy(torch.randn(512, 16))) > 0.95


def test_pruning_removes_idle_children_and_keeps_what_the_others_add():
    torch.manual_seed(0)
    config = FractalConfig(
        input_dim=8,
        output_dim=3,
        start_depth=1,
        max_nodes=10,
        grow_every=20,
        prune_patience=2,
        grow_threshold=1.0,
        **SMALL,
    )
    net = FractalNet(config)
    for _ in range(3):
        net.root.add_child()
    idle = net.root.kids[1]
    with torch.no_grad():  # the middle child adds nothing and the attention turns away from it
        net.root.links[1].fan_out.weight.zero_()
        net.root.links[1].logit.fill_(-8.0)
    train_steps(net, 200)
    assert len(net.root.kids) == 2 and idle not in list(net.root.kids)
    assert [e.kind for e in net.events].count("prune") == 1
    # removing a child that adds nothing changes nothing else
    x, _ = regression_task(2)
    with torch.no_grad():
        net.root.links[0].fan_out.weight.zero_()
    before = net(x)[0]
    net.root.remove_child(0)
    assert torch.allclose(before, net(x)[0], atol=1e-5)
    # prune_weakest takes the asked share
    wide = FractalNet(FractalConfig(input_dim=8, output_dim=3, start_depth=3, max_nodes=12, **SMALL))
    for node in wide.nodes()[:2]:
        node.add_child()
    train_steps(wide, 30)
    children = wide.stats().children
    removed = wide.prune_weakest(0.5)
    assert removed >= children / 2 and wide.stats().children <= children - children / 2


def test_depth_9_trains_without_nan_and_learns():
    torch.manual_seed(0)
    net = FractalNet(
        FractalConfig(input_dim=8, output_dim=3, start_depth=9, max_depth=9, max_nodes=14, grow_every=50, **SMALL)
    )
    assert net.stats().depth == 9
    losses = train_steps(net, 250)
    assert all(np.isfinite(losses))
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:20])
    x, _ = regression_task(3)
    out = net(x * 100.0)[0]  # far outside what it saw: the norms keep it finite and bounded
    assert torch.isfinite(out).all() and out.abs().max() < 1e3


def test_the_hebbian_rule_stays_bounded_where_the_plain_rule_does_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g) * torch.linspace(0.2, 3.0, 16)
    norms = {}
    for rule in ("sanger", "plain"):
        torch.manual_seed(0)
        net = FractalNet(FractalConfig(input_dim=16, output_dim=2, hebbian=rule, hebbian_rate=0.05, **SMALL))
        net.set_recording(True)
        for _ in range(400):
            with torch.no_grad():
                net(x)
            net.hebbian_step()
        norms[rule] = net.root.w_in.weight.norm(dim=1)
    assert torch.isfinite(norms["sanger"]).all() and norms["sanger"].max() < 1.5
    assert not torch.isfinite(norms["plain"]).all() or norms["plain"].max() > 100


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="hebbian"):
        FractalConfig(input_dim=8, output_dim=2, hebbian="wild")
    with pytest.raises(ValueError, match="start_depth"):
        FractalConfig(input_dim=8, output_dim=2, start_depth=5, max_depth=3)


# ------------------------------------------------------------------------------- Q&A data


def test_qa_files_in_the_seed_format_and_clear_errors(tmp_path):
    good = tmp_path / "qa.json"
    good.write_text(json.dumps([{"question": "What is the capital of France?", "answer": "Paris"}]))
    assert read_qa_file(good)[0].answer == "Paris"
    for data, message in [
        ({"question": "q", "answer": "a"}, "non-empty JSON list"),
        ([], "non-empty JSON list"),
        ([{"question": "q"}], "entry 0"),
        ([{"question": "q", "answer": "a"}, {"question": "", "answer": "a"}], "entry 1: question"),
        ([{"question": "q", "answer": 3}], "answer must be non-empty text"),
    ]:
        with pytest.raises(QAFileError, match=message):
            pairs_from_json(data)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(QAFileError, match="not JSON"):
        read_qa_file(tmp_path / "broken.json")


def test_generated_pairs_hold_out_whole_facts_in_unseen_wording():
    train, test = graph_pairs("world", "train"), graph_pairs("world", "test")
    assert len(train) > 500 and len(test) > 50
    assert not {p.question for p in train} & {p.question for p in test}
    facts = lambda pairs: {(p.answer, p.question.split()[-1]) for p in pairs}  # noqa: E731
    assert len(facts(test)) > 20
    assert graph_pairs("world", "test") == test  # seeded


def test_the_measures():
    assert exact_match("The shatters.", ("shatters",)) and not exact_match("shatter", ("shatters",))
    assert token_f1("breaks into pieces", ("breaks",)) == pytest.approx(0.5)
    assert token_f1("x", ("breaks", "x")) == 1.0
    assert parroted("glass", ("metal",), {"glass"}) and not parroted("metal", ("metal",), {"metal"})


# --------------------------------------------------------------------------- the Q&A cores


@pytest.fixture(scope="module")
def qa_data(encoder):
    train = graph_pairs("world", "train")
    test = graph_pairs("world", "test")
    return train, encoder.encode([p.question for p in train]), test, encoder.encode([p.question for p in test])


@pytest.mark.parametrize("core", sorted(QA_CORES))
def test_every_core_keeps_the_contract(core, qa_data, tmp_path):
    train, vectors, _, _ = qa_data
    pairs, x = train[:64], vectors[:64]
    torch.manual_seed(0)
    model = new_model(pairs, QASettings(core=core, width=16, mlp_hidden=32, lstm_hidden=16, fractal=SMALL))
    assert model.core_weights() > 0 and model.weights() > model.core_weights()
    loss = model.loss(torch.as_tensor(x[:8]), [p.question for p in pairs[:8]], [p.answer for p in pairs[:8]])
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.core.parameters())
    points = train_qa(model, pairs, x, QATraining(epochs=2, batch_size=16))
    assert len(points) == 2 and all(np.isfinite(p["loss"]) for p in points)
    questions = [p.question for p in pairs[:6]]
    greedy = model.answer(torch.as_tensor(x[:6]), questions)
    assert greedy == model.answer(torch.as_tensor(x[:6]), questions) and all(isinstance(s, str) for s in greedy)
    sampled = model.answer(torch.as_tensor(x[:6]), questions, temperature=1.0, seed=3)
    assert sampled == model.answer(torch.as_tensor(x[:6]), questions, temperature=1.0, seed=3)
    path = save_qa(model, tmp_path / "state.safetensors")
    again = load_qa(path)
    assert again.answer(torch.as_tensor(x[:6]), questions) == greedy
    assert again.history == model.history


def test_short_training_beats_the_untrained_network_on_held_out_pairs(qa_data):
    train, vectors, test, test_vectors = qa_data
    torch.manual_seed(0)
    settings = QASettings(
        core="fractal", width=32, fractal={"start_depth": 3, "max_depth": 5, "max_nodes": 8, "grow_every": 40}
    )
    model = new_model(train, settings)

    def f1() -> float:
        said = model.answer(torch.as_tensor(test_vectors), [p.question for p in test])
        return float(np.mean([token_f1(s, p.accepted()) for s, p in zip(said, test, strict=True)]))

    untrained = f1()
    points = train_qa(model, train, vectors, QATraining(epochs=4, batch_size=48))
    assert points[-1]["loss"] < points[0]["loss"]
    assert points[-1]["depth"] >= 3 and points[-1]["nodes"] >= 3
    assert f1() > untrained + 0.05


def test_a_damaged_or_foreign_state_is_refused(tmp_path, qa_data):
    from safetensors.torch import save_file

    train, vectors, _, _ = qa_data
    model = new_model(train[:16], QASettings(width=8, fractal={"width": 8, "hidden": 8}))
    path = save_qa(model, tmp_path / "ok.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "text.safetensors").write_text("hello")
    for name, message in [
        ("cut", "does not fit|not a fractal state"),
        ("foreign", "no card"),
        ("text", "not a fractal state file"),
        ("missing", "no fractal state"),
    ]:
        with pytest.raises(FractalStateError, match=message):
            load_qa(tmp_path / f"{name}.safetensors")


# ------------------------------------------------------------------------ the home's assistant


def test_the_assistant_trains_chats_saves_and_loads(tmp_path, encoder):
    qa = tmp_path / "mine.json"
    qa.write_text(json.dumps([{"question": "What colour is the sky?", "answer": "blue"}] * 3))
    assistant = FractalAssistant(tmp_path / "home", encode=encoder.encode)
    with pytest.raises(NotFoundError, match="reverie fractal train"):
        assistant.reply("hello")
    report = assistant.train(qa_file=qa, graphs=["world"], epochs=2, fractal={"max_nodes": 6})
    assert report.pairs == len(graph_pairs("world", "train")) + 3 and report.sources["file"] == 3
    assert report.exact_match is not None and report.nodes >= 3 and report.depth >= 3
    assert assistant.home.fractal.is_file() and assistant.home.fractal_plot.read_bytes()[:4] == b"\x89PNG"
    runs = list(assistant.home.runs.glob("fractal-*.jsonl"))
    assert len(runs) == 1 and len(runs[0].read_text().splitlines()) == 1 + 2  # header + one point an epoch
    reply = assistant.reply("What colour is the sky?")
    assert reply and reply == assistant.reply("What colour is the sky?")
    copy = assistant.save(tmp_path / "copy.safetensors")

    other = FractalAssistant(tmp_path / "other", encode=encoder.encode)
    status = other.load(copy)
    assert status["nodes"] == report.nodes and other.reply("What colour is the sky?") == reply
    # a bad file leaves the home's network as it was
    before = other.home.fractal.read_bytes()
    with pytest.raises(FractalStateError):
        other.load(qa)
    assert other.home.fractal.read_bytes() == before


# ----------------------------------------------------------------------------------- the CLI


def test_the_cli_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REVERIE_HOME", str(tmp_path / "home"))
    (tmp_path / "bad.json").write_text(json.dumps([{"q": "x", "a": "y"}]))
    for argv, message in [
        (["fractal", "train", "--qa", str(tmp_path / "bad.json")], "entry 0"),
        (["fractal", "train", "--qa", str(tmp_path / "none.json")], "no Q&A file"),
        (["fractal", "train", "--graphs", "mars"], "unknown graph"),
        (["fractal", "train", "--graphs", "none"], "nothing to train on"),
        (["fractal", "train", "--epochs", "0"], "--epochs"),
        (["fractal", "chat"], "no fractal network"),
        (["fractal", "chat", "--temperature", "3"], "--temperature"),
        (["fractal", "load", str(tmp_path / "bad.json")], "not a fractal state"),
        (["fractal", "talk", "--server", "localhost:1", "--model", "m"], "--server is a URL"),
        (["fractal", "talk", "--server", "http://127.0.0.1:1", "--model", "m", "--turns", "0"], "--turns"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not (tmp_path / "home" / "models").exists()


def test_the_cli_trains_then_chats_from_a_pipe(tmp_path):
    env = {
        "REVERIE_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PATH": "/usr/bin:/bin",
    }
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps([{"question": "What is the capital of France?", "answer": "Paris"}] * 4))
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "reverie.cli",
            "fractal",
            "train",
            "--qa",
            str(qa),
            "--graphs",
            "none",
            "--epochs",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    report = json.loads(train.stdout)
    assert report["sources"] == {"file": 4} and report["epochs"] == 3 and report["exact_match"] is None
    chat = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "fractal", "chat", "--seed", "1"],
        input="What is the capital of France?\n/temp 0.8\nWhat happens when you drop a glass cup?\n/bye\nnever read\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr
    lines = chat.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[1] == "temperature 0.8" and all(lines), lines
