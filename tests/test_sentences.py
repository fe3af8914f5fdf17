"""The student's data (reverie/llm/sentences.py) and the faithfulness measures (reverie/llm/faithfulness.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reverie.config import Settings
from reverie.edges import edge_id, parse_relation_label
from reverie.llm.faithfulness import answer_included, chain_grounded, faithfulness_report, rouge_l
from reverie.llm.local import LocalLLM
from reverie.llm.sentences import (
    SentenceDataError,
    SentencePrompt,
    TaughtSentence,
    graph_triples,
    read_cache,
    sentence_prompts,
    split_prompts,
    teach,
)
from reverie.llm.verbalize import grounded_sentence
from reverie.schemas import Chain, Step


@pytest.fixture(scope="module")
def world_facts():
    return graph_triples("world")


@pytest.fixture(scope="module")
def world_prompts(world_facts):
    return sentence_prompts({"world": world_facts}, per_graph=80, seed=0)


def stored_fact(step: Step) -> tuple[str, str, str]:
    relation, inverse = parse_relation_label(step.action)
    assert inverse == step.inverse
    return (step.result, relation, step.what) if inverse else (step.what, relation, step.result)


def test_world_prompts_are_chains_of_stored_facts(world_facts, world_prompts):
    facts = {(t.head, t.relation, t.tail) for t in world_facts}
    assert len(world_prompts) >= 70
    assert len({p.key for p in world_prompts}) == len(world_prompts)
    for prompt in world_prompts:
        steps = prompt.chain.steps
        assert prompt.answer == steps[-1].result
        assert prompt.answer != prompt.subject
        for step in steps:
            fact = stored_fact(step)
            assert fact in facts  # an inverse step states the stored fact, not its reverse
            assert step.edge_id == edge_id(*fact)
        for before, after in zip(steps, steps[1:]):
            assert before.result == after.what
        # The question asks about the subject and the last relation; the answer is not in it
        # except where the subject's or the relation's own name holds it.
        rest = prompt.question.lower().replace(prompt.subject.lower(), "").replace(steps[-1].action.lower(), "")
        assert prompt.answer.lower() not in rest
        assert prompt.answer in prompt.system and prompt.user == prompt.question
    kinds = {(len(p.chain.steps), p.chain.steps[0].inverse) for p in world_prompts}
    assert kinds == {(1, False), (1, True), (2, False), (2, True)}
    assert [p.key for p in sentence_prompts({"world": world_facts}, 80, 0)] == [p.key for p in world_prompts]
    # fewer prompts are the first of more, so a teacher cache filled part way serves a smaller count
    assert [p.key for p in sentence_prompts({"world": world_facts}, 30, 0)] == [p.key for p in world_prompts[:30]]
    assert [p.key for p in sentence_prompts({"world": world_facts}, 80, 1)] != [p.key for p in world_prompts]


def test_split_holds_subjects_and_facts_apart(world_facts):
    prompts = sentence_prompts({"world": world_facts, "umls": graph_triples("umls")}, per_graph=300, seed=3)
    train, held = split_prompts(prompts, held_out=0.2, seed=3)
    assert train and held and len(train) + len(held) <= len(prompts)
    for graph in ("world", "umls"):
        held_subjects = {p.subject for p in held if p.graph == graph}
        assert held_subjects and not held_subjects & {p.subject for p in train if p.graph == graph}
    held_facts = {(p.graph, s.edge_id) for p in held for s in p.chain.steps}
    assert not any((p.graph, s.edge_id) in held_facts for p in train for s in p.chain.steps)
    with pytest.raises(SentenceDataError):
        split_prompts(prompts, held_out=1.0, seed=0)


def test_records_round_trip_through_json(world_prompts):
    prompt = next(p for p in world_prompts if len(p.chain.steps) == 2 and p.chain.steps[0].inverse)
    again = SentencePrompt.from_json(json.loads(json.dumps(prompt.to_json())))
    assert again == prompt and again.key == prompt.key
    record = TaughtSentence(prompt, "local", "Raw reply. More", None)
    assert TaughtSentence.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_teach_generates_only_what_the_cache_lacks(world_prompts, world_settings, tmp_path):
    teacher = LocalLLM(world_settings.paths.models)  # the session's model cache: loads in seconds once written
    cache = Settings(home=tmp_path / "home").paths.sentences("local")
    first = teach(world_prompts[:6], teacher, cache, batch_size=4, progress=False)
    assert first.generated == 6 and len(read_cache(cache)) == 6
    for record, prompt in zip(first, world_prompts[:6]):
        assert record.prompt == prompt and record.teacher == "local" and record.text
        kept = grounded_sentence(record.text, prompt.question, prompt.chain)
        assert (record.sentence is None) == (kept is None)
    again = teach(world_prompts[:6], teacher, cache, progress=False)
    assert again.generated == 0 and list(again) == list(first)
    more = teach(world_prompts[4:8], teacher, cache, progress=False)
    assert more.generated == 2 and more[:2] == first[4:6] and len(read_cache(cache)) == 8
    cache.write_text(cache.read_text() + "not json\n")
    with pytest.raises(SentenceDataError, match=":9:"):
        read_cache(cache)


# faithfulness, on hand-made cases


def step(what: str, action: str, result: str) -> Step:
    return Step(what=what, action=action, result=result, edge_id=edge_id(what, action, result), source="test")


GLASS = Chain(
    steps=[
        step("glass cup", "made of", "glass"),
        step("glass", "is", "brittle"),
        step("brittle", "when dropped", "shatters"),
    ],
    answer="shatters",
    score=0.0,
)
QUESTION = "What happens to a glass cup when dropped?"


def test_rouge_l_known_values():
    assert rouge_l("The cat sat.", "the cat sat") == pytest.approx(1.0)
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("a b c d", "d c b a") == pytest.approx(0.25)
    assert rouge_l("dog", "cat") == 0.0 and rouge_l("", "cat") == 0.0


def test_chain_grounding_fails_invented_entities_and_denials():
    faithful = "A glass cup shatters when dropped, because glass is brittle."
    assert answer_included(faithful, QUESTION, GLASS) and chain_grounded(faithful, QUESTION, GLASS)
    invented = "The glass cup shatters, and the volcano floods the ocean village."
    assert grounded_sentence(invented, QUESTION, GLASS) is not None  # Reverie's check lets it through
    assert not chain_grounded(invented, QUESTION, GLASS)
    denial = "A glass cup never shatters when dropped."
    assert answer_included(denial, QUESTION, GLASS) and not chain_grounded(denial, QUESTION, GLASS)
    silent = "A glass cup is brittle."
    assert not answer_included(silent, QUESTION, GLASS) and not chain_grounded(silent, QUESTION, GLASS)
    # Only the first sentence counts.
    assert not answer_included("It breaks. Then it shatters.", QUESTION, GLASS)


def test_faithfulness_report_rates():
    prompt = SentencePrompt("world", QUESTION, GLASS)
    report = faithfulness_report(
        [prompt] * 4,
        ["The glass cup shatters.", "The glass cup shatters on the volcano ocean moon.", "It is brittle.", None],
        references=["The glass cup shatters.", None, "It is brittle.", "x"],
    )
    assert report["prompts"] == 4
    assert report["answer_included"] == pytest.approx(0.5)
    assert report["grounded_sentence"] == pytest.approx(0.5)
    assert report["chain_grounded"] == pytest.approx(0.25)
    assert report["rouge_l"] == pytest.approx(1.0)


def test_home_graph_is_read_from_its_snapshot(world_facts, tmp_path):
    from reverie.graph_store.store import GraphStore

    settings = Settings(home=tmp_path / "own")
    with pytest.raises(SentenceDataError, match="no graph yet"):
        graph_triples("home", settings)
    facts = world_facts[:40]
    store = GraphStore(settings)
    plan = store.plan(facts)
    rng = np.random.default_rng(0)  # the vectors do not matter here: only the facts are read back
    store.apply(
        plan,
        rng.normal(size=(len(plan.entities), store.dim)),
        rng.normal(size=(len(plan.relations), 2, store.dim)),
    )
    store.close()
    read = graph_triples("home", settings)
    assert {(t.head, t.relation, t.tail) for t in read} == {(t.head, t.relation, t.tail) for t in facts}
    with pytest.raises(SentenceDataError, match="unknown graph"):
        graph_triples("atlantis")
