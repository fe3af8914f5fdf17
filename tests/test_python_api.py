"""The Python API as a user calls it: `reverie.Reverie`, and the README's example run as shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from reverie import Reverie
from reverie.errors import ConfigError, NoMatchError, ReverieError
from reverie.feedback import FeedbackLog
from reverie.schemas import Triple

pytestmark = pytest.mark.ray
README = Path(__file__).resolve().parents[1] / "README.md"


def test_ingest_ask_rate_and_close(ray_cluster, tmp_path):
    facts = [
        Triple(head="kettle", relation="made of", tail="steel", source="notes"),
        {"head": "steel", "relation": "when heated", "tail": "gets hot"},
    ]
    with Reverie(home=tmp_path, rollouts=32) as rv:
        report = rv.ingest(triples=facts)
        assert (report.triples_added, report.entities_added) == (2, 3)
        assert rv.ingest(triples=facts).triples_added == 0  # the same facts add nothing
        verdict = rv.ask("What happens when you heat a kettle?", seed=0, verbalize=False)
        assert verdict.answer_entity == "gets hot" and verdict.rollouts == 32
        assert [(s.what, s.result) for s in verdict.chain.steps] == [("kettle", "steel"), ("steel", "gets hot")]
        assert verdict.chain.steps[0].source == "notes"
        record = rv.feedback(verdict, "good", note="yes")
        assert rv.stats().triples == 2
        with pytest.raises(NoMatchError):
            rv.ask("What does a giraffe eat?", verbalize=False)
    assert [r.id for r in FeedbackLog(tmp_path / "feedback").records()] == [record.id]


def test_bad_input_is_refused_before_ray_is_needed(tmp_path):
    rv = Reverie(home=tmp_path)
    with pytest.raises(ReverieError, match="exactly one of"):
        rv.ingest(tmp_path / "facts.tsv", dataset="world")
    with pytest.raises(ReverieError, match="no such file"):
        rv.ask("What happens if I drop this?", image=tmp_path / "missing.png")
    with pytest.raises(ConfigError, match="iterations must be >= 1"):
        rv.train_policy("umls", iterations=0)
    with pytest.raises(ValueError, match="hops must be >= 1"):  # a ConfigError is a ValueError to library callers
        rv.train_policy("umls", env={"hops": 0})
    assert rv._pipeline is None  # nothing above started Ray's actors


def test_the_readme_example_runs_as_shown(tmp_path):
    block = re.search(r"## From Python\n.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.splitlines()
    shown = [
        line.split("  # ")[1].strip() for line in block.splitlines() if "  # " in line
    ]  # what the comments say it prints
    assert printed[0] == shown[0] and printed[1] == shown[1]  # "562 facts", "shatters"
    assert printed[2].startswith(shown[2].removesuffix(" ..."))  # the chain's first step
    assert (tmp_path / "reverie-home" / "feedback").is_dir()
