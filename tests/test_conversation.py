"""The generated conversations and the conversational memory (Ray-free), then follow-ups and small
talk through the Pipeline and over HTTP."""

from __future__ import annotations

import re

import pytest

from reverie.data.conversations import (
    FOLLOW_UP_KINDS,
    conversation_graph,
    conversations,
    name_referent,
    swap_subject,
)
from reverie.encoders.text import display


@pytest.fixture(scope="module")
def world_graph():
    return conversation_graph("world")


def test_conversations_are_seeded_and_cover_every_kind(world_graph):
    first = conversations(world_graph, "test", 40, seed=3)
    again = conversations(world_graph, "test", 40, seed=3)
    other = conversations(world_graph, "test", 40, seed=4)
    assert first == again and first != other
    kinds = [t.kind for c in first for t in c.turns[1:]]
    assert {k: kinds.count(k) for k in FOLLOW_UP_KINDS} == {k: 40 for k in FOLLOW_UP_KINDS}
    for conv in first:
        assert len(conv.turns) == 5 and conv.turns[0].kind == "first"
        for turn in conv.turns:
            assert turn.answers == world_graph.tails[(turn.subject, turn.relation)]
            assert turn.said in turn.answers
            # the rewrite names the subject as the graph does
            assert display(turn.subject) in turn.self_contained.lower() or turn.subject in turn.self_contained


def test_follow_ups_lean_on_the_turn_before(world_graph):
    for conv in conversations(world_graph, "train", 60):
        for last, turn in zip(conv.turns, conv.turns[1:], strict=False):
            if turn.kind == "same-subject":
                assert turn.subject == last.subject and turn.relation != last.relation
                assert display(turn.subject) not in turn.text.lower()
            elif turn.kind == "new-subject":
                assert turn.relation == last.relation and turn.subject != last.subject and turn.carries_relation
            elif turn.kind == "answer-subject":
                assert turn.subject == last.said
            else:
                assert turn.subject not in (last.subject, last.said) and not turn.carries_relation


def test_the_test_wording_is_never_the_training_wording(world_graph):
    def frame(text: str, turn) -> str:
        # the wording without its entities: what a person says around them
        out = text.lower()
        for name in sorted({turn.subject, *turn.answers}, key=len, reverse=True):
            out = out.replace(display(name), "{}")
        return re.sub(r"\b(an?|{}s?)\b", "", out)

    train = {frame(t.text, t) for c in conversations(world_graph, "train", 300) for t in c.turns[1:]}
    test = {frame(t.text, t) for c in conversations(world_graph, "test", 300) for t in c.turns[1:]}
    assert train and test and not train & test


def test_rewrites_name_the_referent():
    assert name_referent("And if you heat it?", "glass cup") == "And if you heat glass cup?"
    assert name_referent("So what is the result used for?", "glass") == "So what is glass used for?"
    assert name_referent("What is a glass cup made of?", "x") is None
    assert swap_subject("What happens when you drop a glass cup?", "glass cup", "rubber ball") == (
        "What happens when you drop a rubber ball?"
    )
    assert swap_subject("What is a glass cup made of?", "rubber ball", "x") is None


# ------------------------------------------------------------------------------ the memory


@pytest.fixture(scope="module")
def trained(encoder):
    """A small memory trained on world and Kinship conversations, and its held-out follow-ups."""
    import torch

    from reverie.models.conversation_memory import (
        MemoryTraining,
        VectorCache,
        follow_up_examples,
        graph_linker,
        train_memory,
    )

    torch.manual_seed(0)
    model, report = train_memory(
        encoder.encode, MemoryTraining(conversations_per_graph=80, graphs=("world", "kinships"), epochs=30)
    )
    cache = VectorCache(encoder.encode)
    examples, held = {}, {}
    for name in ("world", "kinships"):
        graph = conversation_graph(name)
        convs = conversations(graph, "test", 40)
        examples[name] = follow_up_examples(convs, {graph.name: graph_linker(graph, cache)}, cache)
        held[name] = convs
    return model, report, examples, held, cache


def _baseline_accuracy(examples, rule: bool) -> dict[str, float]:
    """No memory: the subject is an entity the words name exactly, the relation never carried.
    The rule: the same, but with no exact name the last subject."""
    from reverie.models.conversation_memory import ROLES

    exact, last = ROLES.index("exact"), ROLES.index("last-subject")
    right = {k: [] for k in FOLLOW_UP_KINDS}
    for i, kind in enumerate(examples.kinds):
        roles = examples.roles[i]
        picks = [j for j in range(roles.shape[0]) if examples.mask[i, j] and roles[j, exact] > 0]
        if not picks and rule:
            picks = [j for j in range(roles.shape[0]) if examples.mask[i, j] and roles[j, last] > 0]
        ok = bool(picks) and picks[0] == int(examples.subject[i]) and float(examples.carry[i]) == 0.0
        right[kind].append(ok)
    return {k: sum(v) / len(v) for k, v in right.items() if v}


def test_the_learned_memory_beats_no_memory_and_the_rule_on_held_out_conversations(trained):
    from reverie.models.conversation_memory import memory_accuracy

    model, report, examples, _, _ = trained
    assert report.train_accuracy > 0.9 and report.losses[-1] < report.losses[0] / 4
    for name, ex in examples.items():
        learned = memory_accuracy(model, ex)
        none, rule = _baseline_accuracy(ex, rule=False), _baseline_accuracy(ex, rule=True)
        assert learned["all"] > 0.85, (name, learned)
        assert learned["all"] > sum(none.values()) / len(none) + 0.3, (name, learned, none)
        # the rule never takes the last answer as the subject, nor carries the last relation
        assert learned["answer-subject"] > rule["answer-subject"] + 0.5, (name, learned, rule)
        assert learned["new-subject"] > rule["new-subject"] + 0.5, (name, learned, rule)


def test_the_shipped_memory_points_at_the_subject_and_the_relation(trained):
    from reverie.models.conversation_memory import (
        SHIPPED,
        RememberedTurn,
        entity_vectors,
        graph_linker,
        history_matrix,
        load_memory,
        memory_candidates,
    )

    model, cache = load_memory(SHIPPED), trained[4]
    history = [RememberedTurn("What is a glass cup made of?", "glass cup", "glass")]
    facts = graph_linker(conversation_graph("world"), cache).facts_about

    def resolve(text, linked=()):
        candidates = memory_candidates(list(linked), history, facts)
        return model.resolve(
            text,
            cache([text])[0],
            history_matrix(cache, history),
            candidates,
            entity_vectors(cache, [c.name for c in candidates]),
        )

    same = resolve("And where is it found?")
    assert (same.subject, same.carries_relation) == ("glass cup", False)
    answer = resolve("And what is that like?")
    assert (answer.subject, answer.carries_relation) == ("glass", False)
    new = resolve("What about a rubber ball?", [("rubber ball", "exact", 1.0)])
    assert (new.subject, new.carries_relation) == ("rubber ball", True)
    switch = resolve("Now, where is a rubber ball found?", [("rubber ball", "exact", 1.0)])
    assert (switch.subject, switch.carries_relation) == ("rubber ball", False)
    assert 0.5 <= same.subject_probability <= 1.0
    # an answer the graph holds no fact about is no subject, whatever the words ("shatters" after a drop)
    history[:] = [RememberedTurn("What happens if I drop a glass cup?", "glass cup", "shatters")]
    hammer = resolve("And if I hit it with a hammer?")
    assert hammer.subject == "glass cup"


def test_save_and_load_give_the_same_resolutions(trained, tmp_path):
    import torch

    from reverie.models.conversation_memory import MemoryLoadError, load_memory, save_memory

    model, _, examples, _, _ = trained
    save_memory(model, tmp_path / "memory", {"note": "test"})
    loaded = load_memory(tmp_path / "memory")
    ex = examples["world"]
    with torch.no_grad():
        a = model(ex.turns, ex.lengths, ex.question, ex.entities, ex.roles, ex.mask)
        b = loaded(ex.turns, ex.lengths, ex.question, ex.entities, ex.roles, ex.mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    (tmp_path / "memory" / "memory.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(MemoryLoadError, match="damaged"):
        load_memory(tmp_path / "memory")
    with pytest.raises(MemoryLoadError, match="reverie train memory"):
        load_memory(tmp_path / "nowhere")


def test_the_shipped_memory_loads():
    from reverie.models.conversation_memory import SHIPPED, load_memory, read_card

    model = load_memory(SHIPPED)
    card = read_card(SHIPPED)
    assert card["graphs"] == ["world", "umls", "kinships"] and card["train_accuracy"] > 0.95
    assert sum(p.numel() for p in model.parameters()) > 10_000


# ------------------------------------------------------------------------------ the pipeline


@pytest.mark.ray
def test_a_session_resolves_each_kind_of_follow_up(world_pipeline):
    from reverie.schemas import Query

    def ask(text):
        return world_pipeline.answer(Query(question=text, session_id="conv-kinds", seed=1, verbalize=False))

    first = ask("What happens when you drop a glass cup?")
    assert first.route == "graph" and first.resolved_question is None
    heat = ask("And if you heat it?")
    assert heat.route == "follow-up" and "glass cup" in heat.resolved_question
    assert heat.linked[0].name == "glass cup" and heat.linked[0].how in ("exact", "memory")
    ball = ask("What about a rubber ball?")
    assert ball.route == "follow-up" and ball.resolved_question.lower().startswith("and if you heat rubber ball")
    assert ball.linked[0].name == "rubber ball"
    switch = ask("Now, what is a wooden spoon made of?")
    assert switch.resolved_question is None and switch.linked[0].name == "wooden spoon"
    assert switch.answer_entity == "wood"
    that = ask("And what is that like?")  # the last answer, wood
    assert that.resolved_question is not None and that.linked[0].name == "wood"


@pytest.mark.ray
def test_small_talk_is_answered_and_a_graph_question_is_not_small_talk(world_pipeline):
    from reverie.schemas import Query

    hello = world_pipeline.answer(Query(question="hello there!", verbalize=False))
    assert hello.route == "small-talk" and hello.answer and hello.candidates == [] and hello.chain is None
    asked = world_pipeline.answer(Query(question="What is a glass cup made of?", verbalize=False))
    assert asked.route == "graph" and asked.answer_entity == "glass"


@pytest.mark.ray
def test_the_rule_and_no_memory_stay_selectable(world_pipeline):
    from reverie.memory import Turn
    from reverie.schemas import Query

    history = [Turn(question="What is a glass cup made of?", answer_entity="glass", linked=["glass cup"])]
    query = Query(question="And what is that like?", seed=1, verbalize=False)
    rule = world_pipeline.answer(query, history, memory="rule")
    assert rule.linked[0].name == "glass cup" and rule.resolved_question is None  # the rule's blind spot
    learned = world_pipeline.answer(query, history, memory="learned")
    assert learned.linked[0].name == "glass"
    from reverie.errors import NoMatchError

    with pytest.raises(NoMatchError):
        world_pipeline.answer(Query(question="And if you heat it?", verbalize=False), history, memory="none")


@pytest.mark.ray
def test_small_talk_over_http_answers_instead_of_422(http):
    reply = http.post("/v1/query", json={"question": "hello", "verbalize": False})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["route"] == "small-talk" and body["answer"] and body["candidates"] == []
    nothing = http.post("/v1/query", json={"question": "What happens when you drop a zorblax quintic?"})
    assert nothing.status_code == 422 and "detail" in nothing.json()


@pytest.mark.ray
def test_the_mlp_router_gives_graph_questions_the_same_answers(world_pipeline):
    from reverie.pipeline import Pipeline
    from reverie.schemas import Query

    with_mlp = Pipeline(world_pipeline.settings.model_copy(update={"router": "mlp"}), world_pipeline.services)
    for question in (
        "What happens when you drop a glass cup?",
        "What is a rubber ball made of?",
        "Where is a wooden spoon found?",
    ):
        query = Query(question=question, seed=2, verbalize=False)
        hub, mlp = world_pipeline.answer(query), with_mlp.answer(query)
        assert hub.route == mlp.route == "graph"
        assert hub.answer_entity == mlp.answer_entity and hub.answer_entity is not None
    assert with_mlp.answer(Query(question="thanks, bye!", verbalize=False)).route == "small-talk"


@pytest.mark.parametrize(
    "args, message",
    [
        (["memory", "--conversations", "3"], "--conversations must be at least 10"),
        (["memory", "--graphs", "world", "nope"], "unknown graph 'nope'"),
        (["memory", "--epochs", "0"], "--epochs must be at least 1"),
        (["hub", "--router", "lstm"], "unknown router 'lstm'"),
    ],
)
def test_training_commands_refuse_bad_input_in_one_line(args, message, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "REVERIE_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "train", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("reverie: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # nothing written
