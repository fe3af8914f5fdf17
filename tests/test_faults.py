"""Faults and bad state: a damaged snapshot, a home another process holds, a Serve replica killed
under load, and kill -9 of the whole `reverie serve` process tree in the middle of ingests.

The store tests run without Ray. The server tests run `reverie serve` as a subprocess over a
REVERIE_HOME of their own holding the built-in world, on its own local Ray cluster
(testkit/serve_process.py), so that what they kill is that server's and never the session's cluster.
Their server is shared in this order: a second process on its home, then the replica kill, then
kill -9 of everything and a restart on the same home.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from reverie.config import Settings
from reverie.data.world import SAMPLE_QUESTION
from reverie.errors import ReverieError, SnapshotError, StoreInUseError
from reverie.graph_store import GraphStore
from reverie.schemas import Triple
from testkit.serve_process import Load, ServeProcess, ingest_world
from testkit.servers import AUTH

FACTS = [
    ("glass cup", "made of", "glass"),
    ("glass", "is", "brittle"),
    ("brittle", "when dropped on a hard floor", "shatters"),
]


# ---------- a damaged snapshot (no Ray) ----------
@pytest.fixture
def small_home(tmp_path, encoder):
    """A home whose snapshot holds three facts, and the snapshot's bytes."""
    settings = Settings(home=tmp_path)
    store = GraphStore(settings)
    plan = store.plan([Triple(head=h, relation=r, tail=t) for h, r, t in FACTS])
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    store.close()
    return settings, store.snapshot_path.read_bytes()


def _inconsistent(good: bytes, path) -> bytes:
    """A readable snapshot whose vectors miss one entity: what a bug or a hand edit could leave."""
    path.write_bytes(good)
    with np.load(path) as data:
        parts = {name: data[name] for name in data.files}
    parts["entity_vecs"] = parts["entity_vecs"][:-1]
    with open(path, "wb") as out:
        np.savez(out, **parts)
    return path.read_bytes()


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


DAMAGE = {
    "empty": lambda good, path: b"",
    "cut at 100 bytes": lambda good, path: good[:100],
    "cut in half": lambda good, path: good[: len(good) // 2],
    "cut before the zip directory's end": lambda good, path: good[:-12],
    "a flipped byte in the vectors": lambda good, path: _flip(good, len(good) // 2),
    "not a zip": lambda good, path: b"entities: glass cup, glass\n",
    "vectors missing an entity": _inconsistent,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_snapshot_is_an_error_naming_the_file(small_home, encoder, damage):
    settings, good = small_home
    path = settings.paths.snapshot
    damaged = damage(good, path)
    path.write_bytes(damaged)
    store = GraphStore(settings)  # constructing reads nothing: the first use loads
    for use in (
        store.stats,
        store.open_index,
        lambda: store.plan([Triple(head="frost jar", relation="made of", tail="glass")]),
    ):
        with pytest.raises(SnapshotError) as error:
            use()
        assert str(path) in error.value.message and "not read as an empty graph" in error.value.message
    assert isinstance(error.value, ReverieError) and error.value.status == 503
    assert path.read_bytes() == damaged, "the damaged snapshot was written over"
    # Put back, the same store object loads it: the error was not remembered as an empty graph.
    path.write_bytes(good)
    assert store.stats().triples == len(FACTS)


# ---------- a home another process holds (no Ray) ----------
HOLD = """
import sys, time
from reverie.config import Settings
from reverie.graph_store import GraphStore
store = GraphStore(Settings(home=sys.argv[1]))
store.open_index()
print("holding", flush=True)
time.sleep(600)
"""


def test_a_home_another_process_holds_is_an_error_naming_the_holder(small_home):
    settings, _ = small_home
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(settings.home)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        second = GraphStore(settings)
        assert second.stats().triples == len(FACTS)  # the snapshot can be read beside the holder
        with pytest.raises(StoreInUseError) as error:
            second.open_index()
        message = error.value.message
        assert (
            str(settings.paths.qdrant) in message
            and f"pid {holder.pid}" in message
            and "in use by another process" in message
        )
        assert "\n" not in message  # the CLI prints it as one line
    finally:
        holder.kill()
        holder.wait()
    # The kernel let go of the dead holder's lock; its note is stale and names nobody.
    third = GraphStore(settings)
    third.open_index()
    assert json.loads((settings.paths.qdrant / "reverie-owner.json").read_text())["pid"] == os.getpid()
    third.close()
    assert not (settings.paths.qdrant / "reverie-owner.json").exists()


def test_the_owner_clears_temporary_snapshots_a_killed_writer_left(small_home):
    settings, good = small_home
    stale = settings.paths.graph / ".snapshot.npz.k1ll3d.tmp"
    stale.write_bytes(good[:1000])  # what atomic_file leaves when its process dies mid-write
    store = GraphStore(settings)
    assert store.stats().triples == len(FACTS) and stale.exists()  # a reader leaves it alone
    store.open_index()
    assert not stale.exists()
    store.close()


# ---------- a server of our own ----------
@pytest.fixture(scope="module")
def world_home(tmp_path_factory, encoder):
    home = tmp_path_factory.mktemp("faults-home")
    ingest_world(home, encoder)
    return home


@pytest.fixture(scope="module")
def server(world_home):
    process = ServeProcess(world_home).start()
    yield process
    process.close()


def _answer(url: str) -> str:
    reply = httpx.post(
        f"{url}/v1/query", json={"question": SAMPLE_QUESTION, "seed": 0, "verbalize": False}, headers=AUTH, timeout=120
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["answer_entity"]


def reverie_cli(*args, home, timeout=300):
    """The CLI on its own local Ray cluster (a short RAY_TMPDIR: Ray's socket paths live under it)."""
    ray_tmp = tempfile.mkdtemp(prefix="rvc-")
    env = {
        **os.environ,
        "REVERIE_HOME": str(home),
        "RAY_TMPDIR": ray_tmp,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    try:
        return subprocess.run(
            [sys.executable, "-m", "reverie.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("reverie: error:")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def serve_refused(home) -> str:
    """`reverie serve` on a home it must refuse: its output, once it has exited with status 2."""
    process = ServeProcess(home)
    try:
        with pytest.raises(RuntimeError, match="exited with 2"):
            process.start(timeout_s=300)
        return process.log()
    finally:
        process.close()


@pytest.mark.ray
@pytest.mark.slow
def test_the_cli_names_what_keeps_it_from_a_home(server, world_home, tmp_path):
    """`reverie ask --local` on the home the server holds (without `--local` it would ask the server),
    and `reverie serve` on a home whose snapshot was cut short: one line each, naming the holder and
    the file (run side by side: each starts a Ray)."""
    damaged = tmp_path / "damaged-home"
    snapshot = (world_home / "graph" / "snapshot.npz").read_bytes()
    (damaged / "graph").mkdir(parents=True)
    (damaged / "graph" / "snapshot.npz").write_bytes(snapshot[: len(snapshot) // 2])
    with ThreadPoolExecutor(2) as pool:
        asked = pool.submit(reverie_cli, "ask", SAMPLE_QUESTION, "--no-llm", "--local", home=world_home)
        served = pool.submit(serve_refused, damaged)
        asked, served = asked.result(), served.result()

    assert asked.returncode == 2
    held = one_error_line(asked.stderr)
    assert (
        f"the vector store at {world_home / 'qdrant'} is in use by another process (pid " in held
        and "ray::GraphStore" in held
    )
    holder = int(held.split("(pid ")[1].split(",")[0])
    assert holder in {p.pid for p in server.processes()}, "the named holder is not the server's"
    assert _answer(server.url) == "shatters"  # the server kept its home

    refused = one_error_line(served)
    assert f"the graph snapshot {damaged / 'graph' / 'snapshot.npz'} cannot be loaded" in refused
    assert (damaged / "graph" / "snapshot.npz").read_bytes() == snapshot[: len(snapshot) // 2]


def ask(http: httpx.Client, k: int, i: int):
    return http.post(
        "/v1/query", json={"question": SAMPLE_QUESTION, "verbalize": False, "seed": i}
    ), f"question {k}-{i}"


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_pipeline_replica_fails_no_request(server):
    killed = server.replica_pids("Pipeline")
    assert killed
    with Load(server.url, clients=4, request=ask) as load:
        load.wait_for(8, timeout_s=120)
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        kill_time = time.monotonic()
        deadline = kill_time + 180
        while time.monotonic() < deadline:  # until Serve has a new replica and it has answered a few
            replaced = set(server.replica_pids("Pipeline")) - set(killed)
            if replaced and load.ok_since(kill_time) >= 8:
                break
            time.sleep(0.5)
    assert replaced, "Serve did not replace the killed replica"
    assert load.failed == [], f"{len(load.failed)} of {load.sent} requests failed: {load.failed[:3]}"
    assert load.ok_since(kill_time) >= 8


def ingest_crate(http: httpx.Client, k: int, i: int):
    """A fact of its own per request: `crate K-I` made of wood."""
    body = {"triples": [{"head": f"crate {k}-{i}", "relation": "made of", "tail": "wood", "source": f"fault:{k}-{i}"}]}
    return http.post("/v1/ingest", json=body), f"crate {k}-{i}"


@pytest.mark.ray
@pytest.mark.slow
def test_kill_9_of_the_server_mid_ingest_keeps_every_acknowledged_ingest(server, world_home):
    before = httpx.get(f"{server.url}/healthz", headers=AUTH, timeout=60).json()["graph"]
    with Load(server.url, clients=6, request=ingest_crate) as load:
        load.wait_for(12, timeout_s=120)
        load.stop.set()  # no new requests; those in flight stay in flight
        killed = server.kill()
    assert killed > 10 and server.processes() == []
    acknowledged = [done.sent for done in load.ok]
    assert len(acknowledged) >= 12
    # Every failure is the kill's: a request cut off in flight (a reply other than 200 would be a bug).
    assert load.failed, "no ingest was in flight at the kill"
    assert all(not why.startswith("HTTP ") for _, why in load.failed), load.failed[:3]

    restarted = ServeProcess(world_home).start()
    try:
        with httpx.Client(base_url=restarted.url, headers=AUTH, timeout=120) as http:
            for name in acknowledged:
                view = http.get(f"/v1/graph/entities/{name}")
                assert view.status_code == 200, f"acknowledged ingest {name!r} was lost"
                facts = [(f["relation"], f["tail"], f["source"]) for f in view.json()["outgoing"]]
                assert facts == [("made of", "wood", f"fault:{name.removeprefix('crate ')}")]
            after = http.get("/healthz").json()["graph"]
        # Nothing half-written: the snapshot loads whole, and every crate in it came with its fact.
        snapshot = GraphStore(Settings(home=world_home))
        assert snapshot.stats().model_dump() == after
        crates = [name for name in snapshot.graph.nodes if name.startswith("crate ")]
        assert set(acknowledged) <= set(crates)
        assert all(len(snapshot.neighbours(name)) == 1 for name in crates)
        assert after == {
            "entities": before["entities"] + len(crates),
            "relations": before["relations"],
            "triples": before["triples"] + len(crates),
        }
        assert not list((world_home / "graph").glob(".snapshot.npz.*.tmp"))
        assert _answer(restarted.url) == "shatters"
    finally:
        restarted.close()
