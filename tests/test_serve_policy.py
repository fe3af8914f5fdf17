"""POST /v1/query answers with the trained policy when the question is about its graph, and with
the embedding walker otherwise: `reverie serve` as a user runs it, without an API key, on its own
local Ray over real HTTP on 127.0.0.1 (so the session's server and its tests are left alone)."""

import httpx
import pytest

from testkit.datasets import write_toy_dataset
from testkit.serve_process import ServeProcess

pytestmark = [pytest.mark.ray, pytest.mark.slow]
TRAINED = {}  # the policy_home fixture's settings


@pytest.fixture(scope="module")
def policy_home(ray_cluster, tmp_path_factory):
    """A home with the toy family and the world ingested and a four-expert policy trained (on the
    session's cluster), then served by its own `reverie serve` with no key."""
    from reverie.agents.path_policy.config import PolicyTrainConfig
    from reverie.agents.path_policy.train import train_policy
    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.pipeline import Pipeline

    folder = tmp_path_factory.mktemp("data") / "toyfamily"
    write_toy_dataset(folder)
    settings = TRAINED["settings"] = Settings(home=tmp_path_factory.mktemp("policy-home"))
    pipeline = Pipeline(settings)
    pipeline.ingest_dataset(load_dataset(str(folder)))
    pipeline.ingest_dataset(load_dataset("world"))
    train_policy(
        settings,
        PolicyTrainConfig(dataset=str(folder), iterations=2, envs=32).replace(
            env={"hops": 2}, net={"experts": 4}, world_model={"dim": 16, "epochs": 5}
        ),
    )
    pipeline.services.stop()  # the server's own graph store takes the home's vector index
    # a two-iteration policy is rarely sure of an answer: this server answers whatever the confidence
    # (threshold 0), so that its chains show
    server = ServeProcess(settings.home, env={"REVERIE_API_KEY": "", "REVERIE_CONFIDENCE_THRESHOLD": "0"}).start()
    yield server.url
    server.close()


def test_http_uses_the_policy_of_the_graph_asked_about(policy_home):
    reply = httpx.post(
        f"{policy_home}/v1/query",
        json={"question": "who is the grandparent of p12", "seed": 0, "verbalize": False, "rollouts": 128},
        timeout=180,
    )
    assert reply.status_code == 200, reply.text
    verdict = reply.json()
    assert verdict["policy"] == "path-policy:toyfamily"
    chain = verdict["chain"]
    assert chain["steps"][0]["what"] == "p12" and chain["answer"] == verdict["answer_entity"]
    assert chain["expert"] in ("spatial", "temporal", "causal", "abstract")
    assert all(step["source"] == "toyfamily" for step in chain["steps"])  # no imagined edges in this policy

    # a question about the built-in world, in the same store, still goes to the walker
    world = httpx.post(
        f"{policy_home}/v1/query",
        json={"question": "What happens when you drop a glass cup?", "seed": 0, "verbalize": False},
        timeout=180,
    )
    assert world.status_code == 200, world.text
    assert world.json()["policy"] == "embedding-walker" and world.json()["answer_entity"] == "shatters"


def test_the_policy_training_run_is_listed_with_its_curve(policy_home):
    """`GET /v1/runs` (what the web page plots) shows the run train_policy logged, and its last
    point is what the saved policy records."""
    runs = httpx.get(f"{policy_home}/v1/runs", timeout=30).json()["runs"]
    [run] = [r for r in runs if r["kind"] == "policy"]
    assert run["name"] == "toyfamily" and run["iterations"] == 2
    points = httpx.get(f"{policy_home}/v1/runs/{run['id']}", timeout=30).json()["points"]
    assert [p["iteration"] for p in points] == [1, 2] and points[0]["env_steps"] < points[1]["env_steps"]
    from reverie.agents.path_policy.net import read_policy_meta

    meta = read_policy_meta(TRAINED["settings"].paths.policy("toyfamily"))
    assert points[-1]["env_steps"] == meta.env_steps
    assert httpx.get(f"{policy_home}/v1/runs/{run['id']}x", timeout=30).status_code == 404


def test_the_web_page_marks_the_expert_of_the_policy_chain(policy_home):
    """In the browser, a chain of the four-expert policy carries its expert's badge (this server has no key)."""
    from selenium.webdriver.common.by import By

    from reverie.agents.path_policy.net import EXPERT_NAMES
    from testkit.browser import chromium, wait_for

    with chromium() as driver:
        driver.get(f"{policy_home}/ui/#ask")
        driver.find_element(By.ID, "question").send_keys("who is the grandparent of p12")
        driver.find_element(By.ID, "ask-button").click()
        wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#chain .step"), 180)
        badge = driver.find_element(By.CSS_SELECTOR, "#chain .expert").text
        assert badge in EXPERT_NAMES
        assert "path-policy:toyfamily" in driver.find_element(By.ID, "verdict-meta").text
        assert driver.find_elements(By.CSS_SELECTOR, "#key-dialog[open]") == []


def test_a_server_without_a_key_still_refuses_foreign_pages(policy_home):
    """This server has no API key (the defaults a new user runs): a page on another site can neither
    post a file into the graph nor, through a rebinding name, read it (issue 21)."""
    before = httpx.get(f"{policy_home}/healthz", timeout=30).json()["graph"]
    posted = httpx.post(
        f"{policy_home}/v1/ingest",
        files={"file": ("facts.tsv", b"evil cup\tmade of\tevil glass\n")},
        headers={"Origin": "http://evil.example.com"},
        timeout=30,
    )
    assert posted.status_code == 403, posted.text
    assert httpx.get(f"{policy_home}/healthz", headers={"Host": "attacker.example"}, timeout=30).status_code == 403
    assert httpx.get(f"{policy_home}/healthz", timeout=30).json()["graph"] == before
    # the same file without an Origin (curl, the CLI) is written: the refusal above was the Origin's
    assert (
        httpx.post(
            f"{policy_home}/v1/ingest", files={"file": ("facts.tsv", b"evil cup\tmade of\tevil glass\n")}, timeout=30
        ).status_code
        == 200
    )


def test_ratings_train_a_new_version_that_answers_without_a_restart(policy_home):
    """Rate verdicts over HTTP, run one `reverie learn` update beside the running server, and the next
    answer to the same question comes from the new version; GET /v1/learning says what it took in."""
    import json
    import os
    import subprocess
    import sys

    def ask() -> dict:
        reply = httpx.post(
            f"{policy_home}/v1/query",
            json={"question": "who is the grandparent of p12", "seed": 0, "verbalize": False, "rollouts": 64},
            timeout=180,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    first = ask()
    assert first["policy_version"] == 0 and first["asked_relation"] in ("grandparent", "inverse of grandparent")
    rated = httpx.post(
        f"{policy_home}/v1/feedback",
        json={"verdict_id": first["id"], "rating": "bad", "note": "it should be p1"},
        timeout=30,
    )
    assert rated.status_code == 200, rated.text
    record = rated.json()
    assert record["subject"] == "p12" and record["asked_relation"] == first["asked_relation"]
    assert record["client"].startswith("addr:")  # no key on this server: the client's address
    # bad input: an unknown verdict, a note over the size limit
    unknown = httpx.post(f"{policy_home}/v1/feedback", json={"verdict_id": "nope", "rating": "good"}, timeout=30)
    assert unknown.status_code == 404 and "no verdict" in unknown.json()["detail"]
    long = httpx.post(
        f"{policy_home}/v1/feedback", json={"verdict_id": first["id"], "rating": "bad", "note": "x" * 5000}, timeout=30
    )
    assert long.status_code == 422

    home = TRAINED["settings"].home
    learn = subprocess.run(
        [
            sys.executable,
            "-m",
            "reverie.cli",
            "learn",
            "--dataset",
            "toyfamily",
            "--from-feedback",
            "--updates",
            "2",
            "--json",
        ],
        env={**os.environ, "REVERIE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert learn.returncode == 0, learn.stderr
    done = json.loads(learn.stdout.splitlines()[-1])
    assert done["version"] == 1 and done["ratings"] == 2  # the bad answer, and p1 named in the note

    second = ask()
    assert second["policy_version"] == 1  # the running server walked with the new version
    status = httpx.get(f"{policy_home}/v1/learning", timeout=30).json()
    assert status["learner"] == "off"
    [policy] = status["policies"]
    assert policy["dataset"] == "toyfamily" and policy["version"] == 1 and policy["kept_versions"] == [0]
    assert policy["ratings_used"] == 2 and policy["last_update"]["updates"] == 2
    runs = httpx.get(f"{policy_home}/v1/runs", timeout=30).json()["runs"]
    assert any(r["kind"] == "learner" and r["name"] == "toyfamily-v1" for r in runs)  # the Runs view lists it
