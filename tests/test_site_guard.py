"""A web page the user visits can neither write to Reverie nor read it (issue 21): the Host check
(DNS rebinding) and the Origin check (cross-site requests) on every face, over real HTTP against the
session's server; bodies that would break a parser get a 4xx; a 422 quotes only an excerpt; and
`reverie serve` will not listen off loopback without a key. The policy itself is tested without Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from reverie.serve.guard import SitePolicy, exposure, same_origin

LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"  # Settings' default cors_origin_regex
FACTS = b"site guard probe cup\tmade of\tsite guard probe glass\n"

# One GET and one POST of each face, with a body the route takes.
FACE_REQUESTS = [
    ("reverie", "GET", "/healthz", None),
    (
        "reverie",
        "POST",
        "/v1/ingest",
        {"triples": [{"head": "site guard probe a", "relation": "is", "tail": "site guard probe b"}]},
    ),
    ("ollama", "GET", "/api/tags", None),
    (
        "ollama",
        "POST",
        "/api/chat",
        {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    ),
    ("openai", "GET", "/v1/models", None),
    (
        "openai",
        "POST",
        "/v1/chat/completions",
        {"model": "smollm2:135m", "messages": [{"role": "user", "content": "hi"}]},
    ),
]


def assert_face_error(reply: httpx.Response, face: str, status: int) -> str:
    """The reply is `status` in the face's own error shape; returns its message."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    if face == "openai":
        assert body["error"]["code"] == status and body["error"]["type"]
        return body["error"]["message"]
    key = "error" if face == "ollama" else "detail"
    assert set(body) == {key} and isinstance(body[key], str)
    return body[key]


def graph_counts(http: httpx.Client) -> dict:
    return http.get("/healthz").json()["graph"]


# ---------- the policy, without a server ----------


def test_hosts_a_loopback_server_answers_to():
    policy = SitePolicy("127.0.0.1", ["reverie.example.com", "*.corp.example"], [], LOCALHOST_ORIGINS)
    for host in [
        "127.0.0.1:8000",
        "127.9.9.9",
        "localhost",
        "LOCALHOST.:8000",
        "app.localhost:3000",
        "[::1]:8000",
        "reverie.example.com",
        "api.corp.example:443",
    ]:
        assert policy.host_allowed(host), host
    for host in [
        "attacker.example",
        "attacker.example:8000",
        ":8000",
        "",
        "10.0.0.1:8000",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "user@127.0.0.1",
        "127.0.0.1/x",
        "corp.example",
        "[::1",
        "127.0.0.1:99999",
    ]:
        assert not policy.host_allowed(host), host


def test_a_server_bound_to_every_interface_answers_to_ip_addresses_but_not_to_names():
    everywhere = SitePolicy("0.0.0.0", [], [], None)
    assert everywhere.host_allowed("192.168.1.20:8000") and everywhere.host_allowed("[fe80::1]:8000")
    assert not everywhere.host_allowed("attacker.example:8000")
    assert SitePolicy("0.0.0.0", ["*"], [], None).host_allowed(
        "attacker.example:8000"
    )  # the operator's explicit choice
    named = SitePolicy("10.1.2.3", [], [], None)
    assert named.host_allowed("10.1.2.3:8000") and not named.host_allowed("10.1.2.4:8000")


def test_origins_a_page_may_call_from():
    policy = SitePolicy("127.0.0.1", [], ["https://app.example.com"], LOCALHOST_ORIGINS)
    assert policy.origin_allowed("http://localhost:3000", "127.0.0.1:8000")
    assert policy.origin_allowed("https://app.example.com", "127.0.0.1:8000")
    for origin in [
        "null",
        "NULL",
        "http://evil.example",
        "http://localhost.evil.example",
        "https://app.example.com.evil.example",
        "file://",
        "chrome-extension://abc",
    ]:
        assert not policy.origin_allowed(origin, "127.0.0.1:8000"), origin
    no_regex = SitePolicy("127.0.0.1", ["reverie.example.com"], [], None)
    assert no_regex.origin_allowed(
        "https://reverie.example.com", "reverie.example.com"
    )  # the page's own, behind a TLS proxy
    assert not no_regex.origin_allowed("http://localhost:3000", "127.0.0.1:8000")


def test_same_origin_compares_scheme_default_ports():
    assert same_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert same_origin("http://reverie.example.com", "reverie.example.com:80")
    assert same_origin("https://reverie.example.com", "reverie.example.com")
    assert not same_origin("http://reverie.example.com", "reverie.example.com:443")
    assert not same_origin("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not same_origin("ftp://127.0.0.1:8000", "127.0.0.1:8000")


def test_a_foreign_host_or_origin_is_refused_with_a_reason():
    policy = SitePolicy("127.0.0.1", [], [], LOCALHOST_ORIGINS)
    assert policy.refusal([(b"host", b"127.0.0.1:8000"), (b"origin", b"http://localhost:5173")]) is None
    assert policy.refusal([(b"host", b"127.0.0.1:8000")]) is None  # the CLI, curl, the SDKs: no Origin
    assert "REVERIE_ALLOWED_HOSTS" in policy.refusal([(b"host", b"attacker.example:8000")])
    assert "Host header" in policy.refusal([])
    assert "Host header" in policy.refusal([(b"host", b"127.0.0.1"), (b"host", b"attacker.example")])
    assert "REVERIE_CORS_ORIGINS" in policy.refusal(
        [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://evil.example.com")]
    )
    long = b"http://" + b"a" * 5000 + b".example"
    assert len(policy.refusal([(b"host", b"127.0.0.1:8000"), (b"origin", long)])) < 400  # quotes an excerpt


def test_serving_off_loopback_needs_a_key_or_insecure():
    from reverie.errors import ReverieError

    assert "only this machine" in exposure("127.0.0.1", None)
    assert "API key" in exposure("0.0.0.0", "secret")
    assert "WARNING" in exposure("0.0.0.0", None, insecure=True)
    with pytest.raises(ReverieError, match="REVERIE_API_KEY.*--insecure"):
        exposure("192.168.1.20", None)


def test_serve_on_every_interface_without_a_key_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REVERIE_API_KEY", "REVERIE_HOST")}
    done = subprocess.run(
        [sys.executable, "-m", "reverie.cli", "serve", "--host", "0.0.0.0"],
        env={**env, "REVERIE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reverie: error: serving on 0.0.0.0")
    assert "REVERIE_API_KEY" in lines[0] and "--insecure" in lines[0]
    assert not any(tmp_path.iterdir())  # refused before anything started or was written


# ---------- over HTTP, against the session's server ----------


@pytest.mark.ray
def test_a_foreign_page_cannot_ingest_a_file(http):
    """The multipart POST a page on another site sends without a preflight: refused, nothing written."""
    before = graph_counts(http)
    reply = http.post("/v1/ingest", files={"file": ("facts.tsv", FACTS)}, headers={"Origin": "http://evil.example.com"})
    assert "cross-site" in assert_face_error(reply, "reverie", 403)
    assert "access-control-allow-origin" not in reply.headers
    assert graph_counts(http) == before
    assert http.get("/v1/graph/entities/site guard probe cup").status_code == 404


@pytest.mark.ray
@pytest.mark.parametrize("face,method,path,body", FACE_REQUESTS)
@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", ":{port}", "127.0.0.1.attacker.example:{port}"]
)
def test_a_rebinding_host_is_refused_on_every_face(http, served, face, method, path, body, host):
    before = graph_counts(http)
    reply = http.request(method, path, json=body, headers={"Host": host.format(port=served[1].port)})
    assert "DNS rebinding" in assert_face_error(reply, face, 403)
    assert graph_counts(http) == before


@pytest.mark.ray
@pytest.mark.parametrize("face,method,path,body", FACE_REQUESTS)
@pytest.mark.parametrize("origin", ["null", "http://evil.example.com", "http://localhost.evil.example"])
def test_a_foreign_origin_is_refused_on_every_face(http, face, method, path, body, origin):
    before = graph_counts(http)
    reply = http.request(method, path, json=body, headers={"Origin": origin})
    assert_face_error(reply, face, 403)
    assert graph_counts(http) == before


@pytest.mark.ray
def test_loopback_names_and_admitted_origins_still_work(http, served):
    port = served[1].port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert http.get("/healthz", headers={"Host": host}).status_code == 200, host
    for origin in (f"http://127.0.0.1:{port}", "http://localhost:5173", f"http://localhost:{port}"):
        reply = http.get("/api/tags", headers={"Origin": origin})
        assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == origin
    # the page's files stay public, and only the Host check applies to them
    assert httpx.get(f"{served[0]}/ui/", timeout=30).status_code == 200


POST_PATHS = sorted(
    {
        (path, kind)
        for path, kind in [
            ("/v1/query", "reverie"),
            ("/v1/ingest", "reverie"),
            ("/v1/feedback", "reverie"),
            ("/v1/fractal/train", "reverie"),
            ("/v1/fractal/chat", "reverie"),
            ("/api/show", "ollama"),
            ("/api/generate", "ollama"),
            ("/api/chat", "ollama"),
            ("/api/embed", "ollama"),
            ("/api/embeddings", "ollama"),
            ("/v1/embeddings", "openai"),
            ("/v1/chat/completions", "openai"),
            ("/v1/completions", "openai"),
        ]
    }
)
# Deep enough to pass Python's recursion limit many times over, small enough for the test server's
# 64 KiB body limit (a 413 would never reach a parser).
LIST_DEPTH, OBJECT_DEPTH = 25_000, 10_000
DEEP_SCHEMA = '{"a":' * 900 + "1" + "}" * 900  # parses, then meets whatever walks a JSON schema
HI = '"messages": [{"role": "user", "content": "hi"}]'


def test_the_nested_body_test_covers_every_post_route():
    from reverie.serve.app import api

    posts = {path for path, methods in api.openapi()["paths"].items() if "post" in methods}
    assert posts == {path for path, _ in POST_PATHS}


@pytest.mark.ray
@pytest.mark.parametrize("path,face", POST_PATHS)
@pytest.mark.parametrize(
    "body",
    [
        "[" * LIST_DEPTH + "]" * LIST_DEPTH,
        '{"a":' * OBJECT_DEPTH + "1" + "}" * OBJECT_DEPTH,
        '{"question": ' + "[" * 900 + "]" * 900 + "}",
        '{"model": "reverie", "messages": ' + "[" * 900 + "]" * 900 + "}",
        '{"model": "smollm2:135m", ' + HI + ', "prompt": "hi", "format": ' + DEEP_SCHEMA + "}",
        '{"model": "smollm2:135m", '
        + HI
        + ', "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        + DEEP_SCHEMA
        + "}}}",
    ],
    ids=["list-25k", "object-10k", "question-900", "messages-900", "format-900", "response-format-900"],
)
def test_a_deeply_nested_body_gets_a_4xx_on_every_route(http, path, face, body):
    reply = http.post(path, content=body.encode(), headers={"Content-Type": "application/json"})
    assert 400 <= reply.status_code < 500 and reply.status_code != 413, (reply.status_code, reply.text[:300])
    if face == "reverie" and reply.status_code == 422:
        assert isinstance(reply.json()["detail"], list)  # FastAPI's list naming the field
    else:
        assert_face_error(reply, face, reply.status_code)
    assert len(reply.content) < 4000


@pytest.mark.ray
def test_a_422_quotes_only_an_excerpt_of_an_oversized_field(http):
    note = "n" * 60_000  # under the test server's 64 KiB body limit, far over the note's 4000 characters
    reply = http.post("/v1/feedback", json={"verdict_id": "x", "rating": "good", "note": note})
    assert reply.status_code == 422
    assert len(reply.content) < 2000
    [error] = reply.json()["detail"]
    assert (
        error["loc"] == ["body", "note"] and error["input"].startswith("nnnn") and "60000 characters" in error["input"]
    )
    question = http.post("/v1/query", json={"question": "q" * 60_000})
    assert question.status_code == 422 and len(question.content) < 2000
    chat = http.post(
        "/api/chat",
        json={"model": "reverie", "messages": [{"role": "user", "content": "hi"}], "options": {"seed": "s" * 60_000}},
    )
    assert chat.status_code == 422 and len(chat.content) < 2000
