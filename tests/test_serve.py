"""Ray Serve over real HTTP on 127.0.0.1, on the session's cluster and the built-in world."""
import socket

import httpx
import pytest

from reverie.graph_store.world import SAMPLE_QUESTION

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(world_pipeline, world_settings):
    from ray import serve

    from reverie.serve.app import run

    url = run(world_settings.model_copy(update={"port": free_port()}))
    yield url
    serve.shutdown()


def test_query_returns_the_verdict(base_url):
    reply = httpx.post(f"{base_url}/v1/query", json={"question": SAMPLE_QUESTION, "seed": 0, "verbalize": False}, timeout=120)
    assert reply.status_code == 200, reply.text
    verdict = reply.json()
    assert verdict["answer_entity"] == "shatters"
    assert [s["result"] for s in verdict["chain"]["steps"]] == ["glass", "brittle", "shatters"]
    assert verdict["candidates"][0]["votes"] >= 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"question": "   "}, "question"),
        ({"question": ""}, "question"),
        ({}, "question"),
        ({"question": SAMPLE_QUESTION, "branches": 0}, "branches"),
        ({"question": SAMPLE_QUESTION, "colour": "red"}, "colour"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(base_url, body, field):
    reply = httpx.post(f"{base_url}/v1/query", json=body, timeout=30)
    assert reply.status_code == 422
    assert field in str(reply.json()["detail"])


def test_unmatched_question_gets_422_with_detail(base_url):
    reply = httpx.post(f"{base_url}/v1/query", json={"question": "Quarterly mortgage refinancing schedule for 2031?"}, timeout=60)
    assert reply.status_code == 422
    assert "no entity in the graph matches" in reply.json()["detail"]


def test_health_and_openapi(base_url):
    health = httpx.get(f"{base_url}/healthz", timeout=30).json()
    assert health["status"] == "ok" and health["graph"]["triples"] > 300
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    assert "/v1/query" in spec["paths"] and "Verdict" in spec["components"]["schemas"]
    assert httpx.get(f"{base_url}/docs", timeout=30).status_code == 200


def test_binds_loopback_only(base_url):
    assert base_url.startswith("http://127.0.0.1:")
