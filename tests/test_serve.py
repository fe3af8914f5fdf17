"""Ray Serve over real HTTP on 127.0.0.1, on the session's cluster and the built-in world.

The app runs with an API key, so every request here sends it, except those that check the 401.
The fault tests kill parts of the running app and come last.
"""

import json
import pickle
import threading
import time

import httpx
import pytest

from reverie.data.world import NO_FACT_QUESTION, SAMPLE_QUESTION
from testkit.servers import API_KEY, AUTH

pytestmark = pytest.mark.ray


def stats(http) -> dict:
    return http.get("/healthz").json()["graph"]


# ---------- asking ----------
def test_query_returns_the_verdict(http, world_pipeline):
    from reverie.schemas import Query

    reply = http.post("/v1/query", json={"question": SAMPLE_QUESTION, "seed": 0, "verbalize": False})
    assert reply.status_code == 200, reply.text
    verdict = reply.json()
    assert verdict["answer_entity"] == "shatters"
    assert [s["result"] for s in verdict["chain"]["steps"]] == ["glass", "brittle", "shatters"]
    assert sum(verdict["nodes"].values()) == verdict["rollouts"]
    # HTTP and the CLI run one Pipeline: the same seed gives the same dreams and ranking
    local = world_pipeline.answer(Query(question=SAMPLE_QUESTION, seed=0, verbalize=False))
    assert [(c["answer"], c["votes"]) for c in verdict["candidates"]] == [(c.answer, c.votes) for c in local.candidates]


def test_a_question_the_graph_does_not_answer_says_so(http):
    for body in (
        {"question": NO_FACT_QUESTION, "seed": 0, "verbalize": False},
        {"question": NO_FACT_QUESTION, "seed": 0},
    ):
        verdict = http.post("/v1/query", json=body).json()
        assert verdict["sure"] is False and verdict["confidence"] < 0.5
        assert verdict["answer_entity"] is None and verdict["chain"] is None
        assert verdict["answer"].startswith("The graph has no fact that answers this")
        assert verdict["backend"] == "template"  # no LLM makes the nearest chain sound like an answer
        assert verdict["alternatives"] and verdict["alternatives"][0] == verdict["candidates"][0]["best_chain"]
        assert verdict["alternatives"][0]["steps"][0]["what"] == "glass cup"
    with http.stream("POST", "/v1/query", json={"question": NO_FACT_QUESTION, "seed": 0, "stream": True}) as reply:
        events = read_events(reply)
    assert [name for name, _ in events] == ["verdict"] and events[0][1]["sure"] is False


def read_events(reply: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in reply.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_streamed_query_sends_tokens_then_the_verdict(http):
    with http.stream("POST", "/v1/query", json={"question": SAMPLE_QUESTION, "seed": 0, "stream": True}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = read_events(reply)
    kinds = [name for name, _ in events]
    assert kinds[-1] == "verdict" and set(kinds[:-1]) == {"token"} and len(kinds) > 3
    verdict = events[-1][1]
    assert verdict["answer_entity"] == "shatters"
    streamed = "".join(data["text"] for _, data in events[:-1])
    # seeded, the bundled model's reply is grounded: the answer is the stream's first sentence
    assert verdict["backend"] == "local" and "shatter" in verdict["answer"].lower()
    assert streamed.strip().startswith(verdict["answer"])
    assert verdict["timings_ms"]["verbalize"] > 0


def test_streamed_query_errors_before_the_stream(http):
    reply = http.post(
        "/v1/query", json={"question": "Quarterly mortgage refinancing schedule for 2031?", "stream": True}
    )
    assert reply.status_code == 422 and "no entity in the graph matches" in reply.json()["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"question": "   "}, "question"),
        ({"question": ""}, "question"),
        ({}, "question"),
        ({"question": SAMPLE_QUESTION, "rollouts": 0}, "rollouts"),
        ({"question": SAMPLE_QUESTION, "colour": "red"}, "colour"),
        ({"question": SAMPLE_QUESTION, "stream": "maybe"}, "stream"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(http, body, field):
    reply = http.post("/v1/query", json=body)
    assert reply.status_code == 422
    assert field in str(reply.json()["detail"])


def test_invalid_json_gets_422(http):
    reply = http.post("/v1/query", content=b'{"question": "glass", ', headers={"content-type": "application/json"})
    assert reply.status_code == 422 and "json" in str(reply.json()["detail"]).lower()


def test_unmatched_question_gets_422_with_detail(http):
    reply = http.post("/v1/query", json={"question": "Quarterly mortgage refinancing schedule for 2031?"})
    assert reply.status_code == 422
    assert "no entity in the graph matches" in reply.json()["detail"]


# ---------- security ----------
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}])
@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/healthz"),
        ("POST", "/v1/query"),
        ("POST", "/v1/ingest"),
        ("GET", "/metrics"),
        ("GET", "/api/tags"),
        ("GET", "/docs"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/graph/search?q=glass"),
        ("POST", "/ui/index.html"),
    ],
)
def test_every_request_needs_the_api_key(base_url, headers, method, path):
    reply = httpx.request(method, base_url + path, headers=headers, json={"question": SAMPLE_QUESTION}, timeout=30)
    assert reply.status_code == 401
    assert "API key" in reply.json()["error" if path.startswith("/api/") else "detail"]  # each face's error shape
    assert reply.headers["www-authenticate"] == "Bearer"


def test_the_web_page_is_public_and_loads_only_its_own_files(base_url):
    """The page's files hold no data and are served without the key (the page asks for it); a
    browser opening / goes on to the page, while Ollama's probe still hears Ollama."""
    import re

    page = httpx.get(base_url + "/ui/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', page.text) if not a.startswith(("data:", "#"))]
    assert "/ui/vendor/cytoscape.min.js" in assets and not [a for a in assets if "//" in a], "nothing from another host"
    for asset in assets:
        assert httpx.get(base_url + asset, timeout=30).status_code == 200, asset
    assert httpx.get(base_url + "/ui", timeout=30).text == page.text
    head = httpx.head(base_url + "/ui/app.js", timeout=30)
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0
    browser = httpx.get(base_url + "/", headers={"accept": "text/html,application/xhtml+xml"}, timeout=30)
    assert browser.status_code == 307 and browser.headers["location"] == "/ui/"
    assert httpx.get(base_url + "/", headers=AUTH, timeout=30).text == "Ollama is running"
    for outside in ("/ui/%2e%2e/app.py", "/ui/..%2fapp.py", "/ui/nothing.js"):
        assert httpx.get(base_url + outside, timeout=30).status_code == 404, outside


def test_bodies_over_the_limit_get_413(http, served):
    limit = served[1].max_body_bytes
    before = stats(http)
    big = {"triples": [{"head": f"h{i}", "relation": "r", "tail": f"t{i}"} for i in range(limit // 30)]}
    reply = http.post("/v1/ingest", json=big)
    assert reply.status_code == 413 and str(limit) in reply.json()["detail"]

    def chunks():  # no content-length: the limit is counted as the body arrives
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    reply = http.post("/v1/ingest", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert stats(http) == before


def test_binds_loopback_only(served):
    import psutil

    port = served[1].port
    listening = [
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening == ["127.0.0.1"]


def test_health_and_openapi(http):
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["graph"]["triples"] > 300
    spec = http.get("/openapi.json").json()
    for path in (
        "/v1/query",
        "/v1/ingest",
        "/v1/feedback",
        "/v1/graph/entities/{entity_id}",
        "/healthz",
        "/metrics",
        "/api/chat",
        "/api/generate",
        "/api/tags",
    ):
        assert path in spec["paths"], path
    assert "Verdict" in spec["components"]["schemas"]
    assert set(spec["paths"]["/v1/ingest"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }
    assert http.get("/docs").status_code == 200


# ---------- ingest and the graph ----------
def test_ingest_json_then_read_the_entity(http):
    body = {
        "triples": [{"head": "frost jar", "relation": "made of", "tail": "glass", "source": "test:json"}],
        "entities": [{"name": "frost jar", "type": "object", "description": "a jar for ice"}],
    }
    first = http.post("/v1/ingest", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["triples_added"] == 1 and first.json()["entities_added"] == 1
    again = http.post("/v1/ingest", json=body).json()
    assert again["triples_added"] == 0 and again["entities_added"] == 0
    view = http.get("/v1/graph/entities/frost jar").json()
    assert view["entity"]["description"] == "a jar for ice"
    assert [(f["relation"], f["tail"], f["source"]) for f in view["outgoing"]] == [("made of", "glass", "test:json")]
    glass = http.get("/v1/graph/entities/glass").json()
    assert any(f["head"] == "frost jar" for f in glass["incoming"])
    assert all(len(f["edge_id"]) >= 8 for f in glass["incoming"] + glass["outgoing"])


def test_ingest_a_file(http):
    tsv = b"sand bottle\tmade of\tglass\nsand bottle\tholds\tsand\n"
    reply = http.post("/v1/ingest", files={"file": ("bottles.tsv", tsv, "text/tab-separated-values")})
    assert reply.status_code == 200, reply.text
    assert reply.json()["triples_added"] == 2 and reply.json()["source"] == "bottles.tsv"
    outgoing = http.get("/v1/graph/entities/sand bottle").json()["outgoing"]
    assert {f["source"] for f in outgoing} == {"bottles.tsv:1", "bottles.tsv:2"}


def test_a_malformed_file_names_its_line_and_writes_nothing(http):
    before = stats(http)
    reply = http.post("/v1/ingest", files={"file": ("bad.tsv", b"a\tmade of\tb\nonly one column\n")})
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith("bad.tsv:2:")
    assert stats(http) == before
    assert http.get("/v1/graph/entities/a").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "triples"),
        ({"triples": []}, "triples"),
        ({"triples": [{"head": "a", "relation": "r"}]}, "tail"),
        ({"triples": [{"head": " ", "relation": "r", "tail": "b"}]}, "head"),
    ],
)
def test_ingest_bad_json_gets_422_naming_the_field(http, body, field):
    reply = http.post("/v1/ingest", json=body)
    assert reply.status_code == 422
    assert any(field in error["loc"] for error in reply.json()["detail"])


def test_nothing_sent_is_unpickled(http, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for kind in ("application/octet-stream", "application/python-pickle", "application/json"):
        reply = http.post("/v1/ingest", content=pickle.dumps(Payload()), headers={"content-type": kind})
        assert reply.status_code in (415, 422)
    reply = http.post("/v1/ingest", files={"file": ("payload.pkl", pickle.dumps(Payload()))})
    assert reply.status_code == 400 and "unsupported file type" in reply.json()["detail"]
    assert not marker.exists()


def test_unknown_entity_gets_404(http):
    reply = http.get("/v1/graph/entities/no such thing")
    assert reply.status_code == 404 and "no such thing" in reply.json()["detail"]


def test_search_finds_entities_by_name_then_meaning(http):
    hits = http.get("/v1/graph/search", params={"q": "glass", "limit": 8}).json()["hits"]
    assert hits[0] == {"name": "glass", "type": "material", "score": 1.0, "how": "name"}
    assert len(hits) == 8 and all(h["name"].startswith("glass") for h in hits if h["how"] == "name")
    meaning = http.get("/v1/graph/search", params={"q": "something that breaks easily", "limit": 5}).json()["hits"]
    assert meaning and all(h["how"] == "vector" for h in meaning) and "brittle" in [h["name"] for h in meaning]
    for params in ({"q": ""}, {"q": "glass", "limit": 0}, {}):
        reply = http.get("/v1/graph/search", params=params)
        assert reply.status_code == 422, params


def test_a_query_can_ask_for_its_rollout_tree(http):
    verdict = http.post(
        "/v1/query", json={"question": SAMPLE_QUESTION, "seed": 3, "verbalize": False, "rollouts": 96, "tree": True}
    ).json()
    tree = verdict["tree"]
    assert tree["rollouts"] == 96 and 0 < tree["shown"] <= 96
    assert sum(n["ends"] for n in tree["nodes"]) == tree["shown"]
    ends = {n["entity"]: 0 for n in tree["nodes"]}
    for node in tree["nodes"]:
        ends[node["entity"]] += node["ends"]
    assert ends[verdict["answer_entity"]] > 0
    assert (
        http.post("/v1/query", json={"question": SAMPLE_QUESTION, "seed": 3, "verbalize": False}).json()["tree"] is None
    )


# ---------- feedback ----------
def test_feedback_is_stored_as_a_dataset(http, served):
    from reverie.feedback import FeedbackLog

    verdict = http.post("/v1/query", json={"question": SAMPLE_QUESTION, "seed": 1, "verbalize": False}).json()
    reply = http.post("/v1/feedback", json={"verdict_id": verdict["id"], "rating": "good", "note": "right chain"})
    assert reply.status_code == 200, reply.text
    records = FeedbackLog(served[1].paths.feedback).records()
    mine = [r for r in records if r.verdict_id == verdict["id"]]
    assert len(mine) == 1
    assert (mine[0].rating, mine[0].note, mine[0].answer_entity, mine[0].question) == (
        "good",
        "right chain",
        "shatters",
        SAMPLE_QUESTION,
    )
    assert [s.result for s in mine[0].chain.steps] == [s["result"] for s in verdict["chain"]["steps"]]


def test_feedback_on_an_unknown_verdict(http, served):
    from reverie.feedback import FeedbackLog

    before = len(FeedbackLog(served[1].paths.feedback).records())
    reply = http.post("/v1/feedback", json={"verdict_id": "f" * 32, "rating": "bad"})
    assert reply.status_code == 404 and "send the verdict itself" in reply.json()["detail"]
    verdict = http.post("/v1/query", json={"question": SAMPLE_QUESTION, "seed": 2, "verbalize": False}).json()
    verdict["id"] = "f" * 32  # a verdict from a server that has forgotten it: sent whole
    reply = http.post("/v1/feedback", json={"verdict_id": verdict["id"], "rating": "bad", "verdict": verdict})
    assert reply.status_code == 200 and reply.json()["rating"] == "bad"
    assert len(FeedbackLog(served[1].paths.feedback).records()) == before + 1
    assert http.post("/v1/feedback", json={"verdict_id": verdict["id"], "rating": "great"}).status_code == 422


# ---------- metrics ----------
def test_metrics_include_ray_and_reverie(http):
    http.get("/healthz")
    deadline, text, ours = time.time() + 60, "", []
    while time.time() < deadline:  # Ray exports metrics every few seconds
        reply = http.get("/metrics")
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
        text = reply.text
        ours = [line for line in text.splitlines() if line.startswith("ray_reverie_http_requests_total{")]
        if any('route="/healthz"' in line for line in ours) and "ray_serve_" in text:
            break
        time.sleep(2)
    assert "# TYPE ray_reverie_http_requests_total counter" in text
    assert any('route="/healthz"' in line and 'status="200"' in line for line in ours)
    assert "ray_serve_" in text and "ray_node_cpu_utilization" in text
    help_lines = [line for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(help_lines) == len(set(help_lines))


# ---------- faults (last: they kill parts of the app) ----------
def test_a_killed_store_restarts_and_keeps_every_acknowledged_ingest(http, world_pipeline):
    import os

    import ray

    store = world_pipeline.services.store
    pid_before = ray.get(store.__ray_call__.remote(lambda self: os.getpid()))
    acknowledged, failed = [], []

    def ingest(i: int) -> None:
        body = {"triples": [{"head": f"crate {i}", "relation": "made of", "tail": "wood", "source": f"fault:{i}"}]}
        try:
            reply = http.post("/v1/ingest", json=body, timeout=120)
        except httpx.HTTPError:
            failed.append(i)
            return
        (acknowledged if reply.status_code == 200 else failed).append(i)

    threads = [threading.Thread(target=ingest, args=(i,)) for i in range(24)]
    for i, t in enumerate(threads):
        t.start()
        if i == 10:
            ray.kill(store, no_restart=False)  # the actor's process dies; Ray restarts it from its snapshot
        time.sleep(0.05)
    for t in threads:
        t.join()
    pid_after = ray.get(store.__ray_call__.remote(lambda self: os.getpid()))
    assert pid_after != pid_before, "the store was not restarted"
    assert len(acknowledged) > 10
    for i in acknowledged:
        view = http.get(f"/v1/graph/entities/crate {i}")
        assert view.status_code == 200, f"acknowledged ingest {i} was lost"
        assert view.json()["outgoing"][0]["source"] == f"fault:{i}"
    assert (
        http.post("/v1/query", json={"question": SAMPLE_QUESTION, "verbalize": False, "seed": 0}).json()[
            "answer_entity"
        ]
        == "shatters"
    )
