"""`reverie compare A B` on the session's Ray cluster: the world home against itself and against a
home that lacks some of the world's facts, on a file of world questions with their answers; and
bad input, which fails with one line before Ray is needed."""

from __future__ import annotations

import json

import pytest

from reverie.cli import main
from reverie.compare import STAGES, dataset_questions, file_questions, render_table

QUESTIONS = 12

SIDE_KEYS = {
    "home",
    "bundle",
    "settings",
    "answered",
    "unlinked",
    "sure",
    "ranking",
    "faithfulness",
    "latency_ms",
    "llm_speed",
    "size_bytes",
}
ANSWER_KEYS = {"answer_entity", "sure", "top_candidate", "rank", "backend", "sentence", "ms"}


@pytest.fixture(scope="module")
def world_questions_file(tmp_path_factory):
    """The first world questions, with their answers, as JSON lines."""
    from reverie.data.world import world_questions

    path = tmp_path_factory.mktemp("compare") / "questions.jsonl"
    lines = [json.dumps({"question": q.question, "answer": q.answer}) for q in world_questions()[:QUESTIONS]]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def world_home(world_pipeline, world_settings):
    return world_settings.home


@pytest.fixture(scope="module")
def fewer_facts_home(ray_cluster, tmp_path_factory):
    """The world without the last fact of every other question's chain (and so without it for every
    object that shares it): those questions lose the answer the full world gives."""
    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.data.world import world_questions
    from reverie.pipeline import Pipeline

    world = load_dataset("world")
    removed = {q.chain[-1] for q in world_questions()[:QUESTIONS][1::2]}
    settings = Settings(home=tmp_path_factory.mktemp("fewer-facts-home"), calibration_questions=60)
    kept = [t for t in world.graph if (t.head, t.relation, t.tail) not in removed]
    assert len(kept) < len(world.graph)
    Pipeline(settings).ingest(kept, world.entities, source="world, fewer facts")
    return settings.home


def compare(capsys, *args: str):
    """(exit code, stdout, stderr) of `reverie compare ARGS`."""
    code = main(["compare", *map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def compare_json(capsys, *args) -> dict:
    code, out, err = compare(capsys, *args, "--json")
    assert code == 0, err
    # This process is also the session's Ray driver: a raylet warning (workers slow to start on a
    # busy machine) can land on its stdout before the report, which starts at its own first line.
    return json.loads(out[out.index("{\n") if not out.startswith("{") and "{\n" in out else 0 :])


def test_a_home_agrees_with_itself(capsys, world_home, world_questions_file):
    report = compare_json(capsys, world_home, world_home, "--questions", world_questions_file, "--no-llm")
    assert report["schema"] == "reverie.compare/1"
    assert report["questions"] == {
        "source": f"file {world_questions_file}",
        "count": QUESTIONS,
        "with_answers": QUESTIONS,
    }
    assert report["agreement"] == {"answer_entity": 1.0, "sure": 1.0, "top_candidate": 1.0}
    a, b = report["sides"]["A"], report["sides"]["B"]
    assert a["ranking"] == b["ranking"]
    assert a["size_bytes"] == b["size_bytes"]
    assert [q["A"]["rank"] for q in report["per_question"]] == [q["B"]["rank"] for q in report["per_question"]]
    # without the LLM every sure answer is the template's sentence, and none is timed for tokens/s
    assert a["faithfulness"]["template"] == 1.0 and a["faithfulness"]["llm"] == 0.0
    assert a["llm_speed"] is None and report["llm"] is False


def test_fewer_facts_answer_otherwise_and_rank_lower(capsys, world_home, fewer_facts_home, world_questions_file):
    report = compare_json(capsys, world_home, fewer_facts_home, "--questions", world_questions_file, "--no-llm")
    assert set(report) == {"schema", "questions", "llm", "agreement", "sides", "per_question"}
    a, b = report["sides"]["A"], report["sides"]["B"]
    for side in (a, b):
        assert set(side) == SIDE_KEYS
        assert set(side["latency_ms"]) == {*STAGES, "end_to_end"}
        assert side["latency_ms"]["end_to_end"]["p50"] <= side["latency_ms"]["end_to_end"]["p95"]
        assert side["ranking"]["questions"] == QUESTIONS
        assert 0.0 <= side["ranking"]["hits@1"] <= side["ranking"]["hits@10"] <= 1.0
        parts = side["size_bytes"]
        assert parts["total"] == sum(parts[p] for p in ("graph", "vectors", "models", "student", "other"))
        assert parts["graph"] > 0 and parts["vectors"] > 0
    assert report["agreement"]["answer_entity"] < 1.0
    assert a["ranking"]["mrr"] > b["ranking"]["mrr"]
    assert a["ranking"]["hits@1"] > b["ranking"]["hits@1"]
    assert b["size_bytes"]["graph"] < a["size_bytes"]["graph"]  # fewer facts, a smaller snapshot
    assert len(report["per_question"]) == QUESTIONS
    for row in report["per_question"]:
        assert set(row["A"]) == set(row["B"]) == ANSWER_KEYS
        assert row["A"]["rank"] is None or row["A"]["rank"] >= 1

    lines = render_table(report).splitlines()  # what `reverie compare` prints without --json
    assert lines[0].startswith(f"{QUESTIONS} questions")
    assert any(line.startswith("MRR") for line in lines)
    assert lines[-1].startswith("agreement: same answer")


def test_with_the_llm_faithfulness_and_tokens_per_second(capsys, world_home, world_questions_file):
    report = compare_json(
        capsys, world_home, world_home, "--questions", world_questions_file, "--limit", "1", "--speed-prompts", "1"
    )
    assert report["llm"] is True and report["questions"]["count"] == 1
    for side in report["sides"].values():
        faithful = side["faithfulness"]
        assert faithful["sentences"] >= 1
        assert faithful["llm"] + faithful["template"] == pytest.approx(1.0)
        assert 0.0 <= faithful["answer_included"] <= 1.0 and 0.0 <= faithful["chain_grounded"] <= 1.0
        speed = side["llm_speed"]
        assert speed["prompts"] == 1 and speed["tokens"] > 0 and speed["tokens_per_s"] > 0
        assert side["latency_ms"]["verbalize"]["p50"] > 0


def test_questions_from_a_file_and_a_dataset(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text(
        '# asked as written\nWhat happens when you drop a glass cup?\n\n{"question": "Q2", "answer": ["a", "b"]}\n'
    )
    asked, source = file_questions(path)
    assert source == f"file {path}"
    assert [q.question for q in asked] == ["What happens when you drop a glass cup?", "Q2"]
    assert asked[0].answers == frozenset() and asked[1].answers == frozenset({"a", "b"})

    asked, source = dataset_questions("umls", "test", limit=3)
    assert source == "dataset umls test" and len(asked) == 3
    for q in asked:
        assert len(q.answers) == 1 and q.answers <= q.known
        assert "_" not in q.question  # names read as words


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing home", "no such folder"),
        ("not a home", "neither a Reverie home"),
        ("unknown dataset", "unknown dataset"),
        ("empty questions", "no questions in the file"),
        ("both sources", "exactly one of --dataset"),
        ("bad JSON line", "not a JSON object"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, case, message):
    home = tmp_path / "home"
    (home / "graph").mkdir(parents=True)
    (home / "graph" / "snapshot.npz").write_bytes(b"")  # a home, as far as the arguments' check looks
    questions = tmp_path / "questions.txt"
    questions.write_text("What happens when you drop a glass cup?\n")
    args = {
        "missing home": [home, tmp_path / "nowhere", "--questions", questions],
        "not a home": [home, tmp_path, "--questions", questions],
        "unknown dataset": [home, home, "--dataset", "no-such-dataset"],
        "empty questions": [home, home, "--questions", tmp_path / "empty.txt"],
        "both sources": [home, home, "--questions", questions, "--dataset", "world"],
        "bad JSON line": [home, home, "--questions", tmp_path / "bad.jsonl"],
    }[case]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    (tmp_path / "bad.jsonl").write_text('{"question": \n')
    code, out, err = compare(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("reverie: error: ") and message in err


def test_a_bundle_answers_as_the_home_it_came_from(capsys, fewer_facts_home, world_questions_file, tmp_path):
    from reverie.bundle import export_bundle
    from reverie.home import Home

    bundle = tmp_path / "bundle"
    export_bundle(Home(fewer_facts_home), bundle)
    report = compare_json(capsys, bundle, fewer_facts_home, "--questions", world_questions_file, "--no-llm")
    a, b = report["sides"]["A"], report["sides"]["B"]
    assert a["bundle"] == str(bundle) and b["bundle"] is None
    assert a["home"] != str(fewer_facts_home)  # imported into a home of its own
    assert report["agreement"] == {"answer_entity": 1.0, "sure": 1.0, "top_candidate": 1.0}
    assert a["ranking"] == b["ranking"]
