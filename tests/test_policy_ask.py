"""`reverie ask` with a trained policy: rollouts as Ray tasks, experts and imagined edges in the provenance."""

from __future__ import annotations

import numpy as np
import pytest

from reverie.agents.path_policy.net import EXPERT_NAMES
from testkit.datasets import write_toy_dataset


@pytest.mark.ray
@pytest.mark.slow
def test_ask_uses_the_trained_policy_and_keeps_every_path(ray_cluster, tmp_path):
    from reverie.agents.path_policy.config import PolicyTrainConfig
    from reverie.agents.path_policy.train import train_policy
    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.edges import WORLD_MODEL_SOURCE, parse_relation_label
    from reverie.pipeline import Pipeline
    from reverie.schemas import Query

    folder = tmp_path / "toyfamily"
    write_toy_dataset(folder)
    data = load_dataset(str(folder))
    facts = {(t.head, t.relation, t.tail) for t in data.graph}
    settings = Settings(home=tmp_path / "home")
    pipeline = Pipeline(settings)
    try:
        pipeline.ingest_dataset(data)
        before = pipeline.answer(Query(question="who is the grandparent of p12", verbalize=False, seed=0, rollouts=32))
        assert before.policy == "embedding-walker"  # no policy trained yet

        train_policy(
            settings,
            PolicyTrainConfig(dataset=str(folder), iterations=2, envs=32).replace(
                env={"hops": 2, "imagined_edges": 2}, net={"experts": 4}, world_model={"dim": 16, "epochs": 5}
            ),
        )
        verdict = pipeline.answer(
            Query(question="who is the grandparent of p12", verbalize=False, seed=0, rollouts=300)
        )
        assert verdict.policy == "path-policy:toyfamily"
        grandparent = next(t.tail for t in data.train if t.head == "p12" and t.relation == "grandparent")
        assert verdict.candidates[0].answer == grandparent  # the relation asked is "grandparent", and its answer wins
        assert verdict.answer_entity == (grandparent if verdict.sure else None)
        assert verdict.rollouts == 300 and verdict.candidates
        assert verdict.confidence == pytest.approx(verdict.candidates[0].confidence, abs=1e-4)
        assert 0.0 < verdict.confidence <= 1.0
        assert verdict.sure == (verdict.confidence >= 0.5)
        assert before.sure == (before.confidence >= 0.5)  # the embedding walker's confidence, fit on the toy graph
        assert sum(c.votes for c in verdict.candidates) <= 300
        for cand in verdict.candidates:
            chain = cand.best_chain
            assert chain.answer == cand.answer and chain.expert in EXPERT_NAMES
            assert chain.steps[0].what == "p12" and chain.steps[-1].result == cand.answer
            for a, b in zip(chain.steps, chain.steps[1:]):
                assert a.result == b.what
            for step in chain.steps:
                relation, _ = parse_relation_label(step.action)
                head, tail = (step.result, step.what) if step.inverse else (step.what, step.result)
                if step.imagined:
                    assert step.source == WORLD_MODEL_SOURCE and (head, relation, tail) not in facts
                else:
                    assert step.source == "toyfamily" and (head, relation, tail) in facts
        scores = [c.score for c in verdict.candidates]
        assert scores == sorted(scores, reverse=True)
        # the same seed gives the same dreams
        again = pipeline.answer(Query(question="who is the grandparent of p12", verbalize=False, seed=0, rollouts=300))
        assert [c.answer for c in again.candidates] == [c.answer for c in verdict.candidates]
        assert np.isfinite(scores).all()
    finally:
        pipeline.services.stop()
