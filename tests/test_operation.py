"""`reverie serve` in operation, run as a user runs it (a subprocess with its own Ray): readiness
(503 until every deployment is up), the first answer said by the LLM, the CLI as the server's
client (no Ray of its own), SIGTERM with a request in flight, and Ctrl-C while starting."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from testkit.serve_process import READY_LINE, ServeProcess
from testkit.servers import AUTH

QUESTION = "What happens when you drop a glass cup?"
NATIVE_DUMP = ("*** SIGTERM received", "PC: @", "Traceback (most recent call last)")


def cli(home: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, Path]:
    """`reverie ARGS` on `home`, with no API key of its own and a fresh RAY_TMPDIR: a Ray it
    started would leave its session there."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rvc-"))
    env = {k: v for k, v in os.environ.items() if k not in ("REVERIE_API_KEY", "RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update({"REVERIE_HOME": str(home), "RAY_TMPDIR": str(ray_tmp)})
    done = subprocess.run(
        [sys.executable, "-m", "reverie.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return done, ray_tmp


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh `reverie serve` on an empty home with the bundled LLM, and what /healthz answered
    while it started: (ServeProcess, [(status, body), ...])."""
    home = tmp_path_factory.mktemp("operation-home")
    proc = ServeProcess(home, env={"REVERIE_LLM_BACKENDS": '["local"]'})
    proc.env.pop("RAY_AUTH_MODE", None)  # as a user's shell has it (this session's Ray may have set one)
    proc.launch()
    seen: list[tuple[int, dict]] = []
    deadline = time.monotonic() + 300
    try:
        while READY_LINE not in proc.log():
            assert proc.process.poll() is None, proc.log()[-3000:]
            assert time.monotonic() < deadline, proc.log()[-3000:]
            try:
                reply = httpx.get(f"{proc.url}/healthz", headers=AUTH, timeout=10)
                if reply.status_code in (200, 503):
                    seen.append((reply.status_code, reply.json()))
            except httpx.HTTPError:
                pass  # the proxy is not listening yet
            time.sleep(0.2)
        yield proc, seen
    finally:
        proc.close()


def test_healthz_says_starting_until_every_deployment_is_ready(server):
    proc, seen = server
    assert seen and seen[0][0] == 503, seen[:3]
    assert seen[0][1]["status"] == "starting" and seen[0][1]["waiting_for"]
    statuses = [status for status, _ in seen]
    first_ok = statuses.index(200) if 200 in statuses else len(statuses)
    assert set(statuses[first_ok:]) <= {200}, "healthz went back to starting once ready"
    assert all(body["waiting_for"] for _, body in seen[:first_ok])
    ready = httpx.get(f"{proc.url}/healthz", headers=AUTH, timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    log = proc.log()
    for deployment in ("LLM", "Encoders", "Pipeline", "ReverieAPI"):
        assert f"  {deployment} ready (" in log
    assert "Token authentication is enabled" not in log and log.count("Ray: a local single-node cluster") == 1


def test_the_cli_asks_the_running_server_without_starting_ray(server):
    proc, _ = server
    note = proc.home / "qdrant" / "reverie-server.json"
    assert stat.S_IMODE(note.stat().st_mode) == 0o600  # it holds the API key
    assert json.loads(note.read_text())["url"] == proc.url

    ingested, ray_tmp = cli(proc.home, "ingest", "--dataset", "world", "--quiet")
    assert ingested.returncode == 0, ingested.stderr
    assert "ingested world: 562 new of 562 triples" in ingested.stdout
    assert "graph now 283 entities" in ingested.stdout
    assert not any(ray_tmp.iterdir()), "the CLI started a Ray of its own"

    stats, ray_tmp = cli(proc.home, "stats")
    assert stats.returncode == 0 and json.loads(stats.stdout) == {"entities": 283, "relations": 24, "triples": 562}
    assert not any(ray_tmp.iterdir())

    asked, ray_tmp = cli(proc.home, "ask", QUESTION, "--no-llm", "--seed", "1", "--json")
    assert asked.returncode == 0, asked.stderr
    verdict = json.loads(asked.stdout)
    assert verdict["answer_entity"] == "shatters" and verdict["backend"] == "template"
    rated = httpx.post(  # the server knows the verdict: it answered it
        f"{proc.url}/v1/feedback", json={"verdict_id": verdict["id"], "rating": "good"}, headers=AUTH, timeout=30
    )
    assert rated.status_code == 200, rated.text
    assert not any(ray_tmp.iterdir())
    printed, _ = cli(proc.home, "ask", QUESTION, "--no-llm", "--seed", "1")
    assert printed.returncode == 0 and "A: Shatters" in printed.stdout and "Chain (by " in printed.stdout

    # The same errors and exit codes as without a server: one line, exit 2.
    unknown, _ = cli(proc.home, "ask", "qwertyuiop zxcvbnm")
    assert unknown.returncode == 2 and unknown.stderr.startswith("reverie: error: no entity in the graph matches")
    assert len(unknown.stderr.strip().splitlines()) == 1
    # --local reads the home itself: `stats` from the snapshot the server wrote (no Ray either).
    local, ray_tmp = cli(proc.home, "stats", "--local")
    assert local.returncode == 0 and json.loads(local.stdout)["triples"] == 562
    assert not any(ray_tmp.iterdir())


def test_the_first_answer_is_said_by_the_llm(server):
    proc, _ = server
    reply = httpx.post(f"{proc.url}/v1/query", json={"question": QUESTION, "seed": 0}, headers=AUTH, timeout=120)
    assert reply.status_code == 200
    assert reply.json()["backend"] == "local", reply.json()["answer"]


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(server):
    proc, _ = server
    replies: list[httpx.Response] = []
    # Sampled with a fresh seed: not from the reply cache, so the LLM takes seconds.
    asking = threading.Thread(
        target=lambda: replies.append(
            httpx.post(
                f"{proc.url}/v1/query",
                json={"question": "What happens when you heat ice?", "seed": 11},
                headers=AUTH,
                timeout=120,
            )
        )
    )
    asking.start()
    deadline = time.monotonic() + 30
    while requests_in_flight(proc) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.process.send_signal(signal.SIGTERM)
    asking.join(timeout=120)
    assert proc.process.wait(timeout=90) == 0
    assert replies and replies[0].status_code == 200, replies and replies[0].text
    log = proc.log()
    assert not any(mark in log for mark in NATIVE_DUMP), log[-3000:]
    assert log.strip().splitlines()[-1].startswith("Reverie stopped on SIGTERM: 1 request in flight finished")
    assert not (proc.home / "qdrant" / "reverie-server.json").exists()
    assert not proc.processes(), "Ray processes outlived the server"
    # What the server held is on disk: the graph reads back without it.
    stats, _ = cli(proc.home, "stats")
    assert json.loads(stats.stdout)["triples"] == 562


def requests_in_flight(proc: ServeProcess) -> int:
    """Requests the server has taken and not yet answered, besides this one."""
    return httpx.get(f"{proc.url}/healthz", headers=AUTH, timeout=30).json()["requests_in_flight"]


def test_ctrl_c_while_starting_stops_cleanly(tmp_path):
    proc = ServeProcess(tmp_path / "home").launch()
    try:
        deadline = time.monotonic() + 120
        while "Starting Reverie's deployments" not in proc.log():
            assert proc.process.poll() is None and time.monotonic() < deadline, proc.log()[-3000:]
            time.sleep(0.1)
        os.killpg(proc.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
        assert proc.process.wait(timeout=60) == 0, proc.log()[-3000:]
        log = proc.log()
        assert not any(mark in log for mark in NATIVE_DUMP), log[-3000:]
        assert log.strip().splitlines()[-1].startswith("Reverie stopped on SIGINT: 0 requests in flight finished")
        assert READY_LINE not in log
        deadline = time.monotonic() + 30
        while proc.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not proc.processes(), "Ray processes outlived the server"
    finally:
        proc.close()
