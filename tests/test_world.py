"""Tests for the built-in commonsense world (reverie.data.world)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from reverie.data import world as w
from reverie.schemas import Entity, Triple


@pytest.fixture(scope="module")
def built() -> tuple[list[Entity], list[Triple]]:
    return w.build_world()


@pytest.fixture(scope="module")
def entities(built) -> dict[str, Entity]:
    return {e.name: e for e in built[0]}


@pytest.fixture(scope="module")
def triples(built) -> list[Triple]:
    return built[1]


@pytest.fixture(scope="module")
def keys(triples) -> set[tuple[str, str, str]]:
    return {(t.head, t.relation, t.tail) for t in triples}


@pytest.fixture(scope="module")
def questions() -> list[w.WorldQuestion]:
    return w.world_questions()


def test_deterministic():
    a, b = w.build_world(), w.build_world()
    assert [e.model_dump() for e in a[0]] == [e.model_dump() for e in b[0]]
    assert [t.model_dump() for t in a[1]] == [t.model_dump() for t in b[1]]
    assert w.world_questions() == w.world_questions()


def test_sizes(built, entities):
    ents, trs = built
    assert 150 <= len(ents) <= 300
    assert 300 <= len(trs) <= 600
    by_type = defaultdict(int)
    for e in ents:
        by_type[e.type] += 1
    assert 60 <= by_type["object"] <= 100
    assert 20 <= by_type["material"] <= 30
    assert 20 <= by_type["property"] <= 30
    assert by_type["result"] >= 15


def test_entities_well_formed(built):
    ents, _ = built
    names = [e.name for e in ents]
    assert len(names) == len(set(names)), "duplicate entity names"
    for e in ents:
        assert e.type in w.ENTITY_TYPES, e
        assert e.name == e.name.lower() and e.name == e.name.strip(), e.name
        assert "_" not in e.name, e.name
        assert e.description and "\n" not in e.description, e


def test_triples_well_formed(triples, entities):
    seen = set()
    for t in triples:
        assert t.head in entities and t.tail in entities, t
        assert t.source == w.WORLD_SOURCE
        assert "_" not in t.relation and t.relation == t.relation.lower(), t.relation
        key = (t.head, t.relation, t.tail)
        assert key not in seen, f"duplicate triple {key}"
        seen.add(key)


def test_relation_vocabulary(triples, entities):
    structural = {w.MADE_OF, w.IS, w.IS_A, w.FOUND_IN, w.USED_FOR}
    for t in triples:
        assert t.relation in structural or t.relation in w.ACTION_QUESTIONS, t.relation
        head, tail = entities[t.head].type, entities[t.tail].type
        if t.relation == w.MADE_OF:
            assert (head, tail) == ("object", "material"), t
        elif t.relation == w.IS:
            assert head in ("object", "material") and tail == "property", t
        elif t.relation == w.IS_A:
            assert head in ("object", "material") and tail == "category", t
        elif t.relation == w.FOUND_IN:
            assert (head, tail) == ("object", "place"), t
        elif t.relation == w.USED_FOR:
            assert (head, tail) == ("object", "action"), t
        else:  # an action edge
            assert (head, tail) == ("property", "result"), t


def test_sinks(triples, entities):
    heads = {t.head for t in triples}
    for e in entities.values():
        if e.type in ("result", "category", "place", "action"):
            assert e.name not in heads, f"{e.type} {e.name!r} has an outgoing edge"


def test_every_object_material_property_is_connected(triples, entities):
    out = defaultdict(set)
    for t in triples:
        out[t.head].add(t.relation)
    for e in entities.values():
        if e.type == "object":
            assert {w.MADE_OF, w.IS_A, w.FOUND_IN} <= out[e.name], e.name
        elif e.type == "material":
            props = [t for t in triples if t.head == e.name and t.relation == w.IS]
            assert 2 <= len(props) <= 4, e.name
        elif e.type == "property":
            effects = [t for t in triples if t.head == e.name]
            assert 1 <= len(effects) <= 3, e.name


def test_canonical_glass_cup_chain(keys, entities):
    assert ("glass cup", "made of", "glass") in keys
    assert ("glass", "is", "brittle") in keys
    assert ("brittle", "when dropped on a hard floor", "shatters") in keys
    assert entities["glass cup"].type == "object"
    assert entities["glass"].type == "material"
    assert entities["brittle"].type == "property"
    assert entities["shatters"].type == "result"
    chains = w.action_chains(w.build_world()[1], "glass cup", w.DROP)
    assert chains == [
        (
            ("glass cup", "made of", "glass"),
            ("glass", "is", "brittle"),
            ("brittle", "when dropped on a hard floor", "shatters"),
        )
    ]


def test_no_contradictions(triples, entities):
    """No object reaches two different results through the same action."""
    for e in entities.values():
        if e.type != "object":
            continue
        for action in w.ACTIONS:
            results = {c[-1][2] for c in w.action_chains(triples, e.name, action)}
            assert len(results) <= 1, (e.name, action, results)


def test_materials_answer_each_action_once(triples):
    props = defaultdict(list)
    for t in triples:
        if t.relation == w.IS:
            props[t.head].append(t.tail)
    effects = defaultdict(list)
    for t in triples:
        if t.relation in w.ACTION_QUESTIONS:
            effects[t.head].append(t.relation)
    for material, material_props in props.items():
        actions = [a for p in material_props for a in effects[p]]
        assert len(actions) == len(set(actions)), (material, actions)


def test_sample_question_first(questions):
    first = questions[0]
    assert first.question == w.SAMPLE_QUESTION
    assert first.answer == "shatters"
    assert first.chain == (
        ("glass cup", "made of", "glass"),
        ("glass", "is", "brittle"),
        ("brittle", "when dropped on a hard floor", "shatters"),
    )


def test_question_count_and_hops(questions):
    assert 15 <= len(questions) <= 30
    assert sum(len(q.chain) == 3 for q in questions) >= 10
    assert any(len(q.chain) == 2 for q in questions)
    assert len({q.question for q in questions}) == len(questions)


def test_question_chains_valid_and_unique(questions, keys, entities, triples):
    for q in questions:
        assert q.chain, q
        for hop in q.chain:
            assert hop in keys, (q.question, hop)
        for a, b in zip(q.chain, q.chain[1:]):
            assert a[2] == b[0], (q.question, a, b)
            assert a[1] in (w.MADE_OF, w.IS), (q.question, a)
        obj, action, answer = q.chain[0][0], q.chain[-1][1], q.chain[-1][2]
        assert entities[obj].type == "object"
        assert answer == q.answer and entities[answer].type == "result"
        assert obj in q.question
        assert w.ACTION_QUESTIONS[action].format(a=w.with_article(obj)) == q.question
        chains = w.action_chains(triples, obj, action)
        assert chains == [q.chain], (q.question, chains)


def test_questions_varied(questions):
    assert len({q.chain[-1][1] for q in questions}) >= 10
    objects = [q.chain[0][0] for q in questions]
    assert len(objects) == len(set(objects))


def test_action_chains_finds_ambiguity(triples):
    # Two materials, both soft: two chains to the same result, so no question is asked.
    chains = w.action_chains(triples, "feather pillow", w.SQUEEZE)
    assert len(chains) == 2 and {c[-1][2] for c in chains} == {"squashes"}
    assert not any(q.chain[0][0] == "feather pillow" and q.chain[-1][1] == w.SQUEEZE for q in w.world_questions())


def test_with_article():
    assert w.with_article("glass cup") == "a glass cup"
    assert w.with_article("ice cube") == "an ice cube"
