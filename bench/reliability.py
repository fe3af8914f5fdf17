"""Reliability of `reverie serve` on 127.0.0.1: a soak, a Serve replica killed under load, and
kill -9 of the whole server in the middle of ingests.

One `reverie serve` subprocess over a fresh REVERIE_HOME holding the built-in world, on its own
local Ray cluster (testkit/serve_process.py, shared with tests/test_faults.py), in three phases:
1. soak: clients ask the world's questions for a bounded time (or number of requests); per time
   window, the requests answered, p50/p99 latency, and the summed RSS of every process of the
   server and its Ray cluster. Flat means the last window is like the first.
2. replica kill: clients keep asking while the Pipeline replica's process is killed (SIGKILL), once
   per round, each round waiting for Serve's replacement; every request must still be answered.
3. kill -9: clients ingest distinct facts; after enough acknowledgements the whole process tree is
   stopped and killed at once; a new server on the same home must hold every acknowledged fact.
The load generator, the server and its rollouts share this machine's cores.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench.common import fresh_home, write_table
from reverie.config import Settings
from reverie.data.world import world_questions
from reverie.graph_store import GraphStore
from testkit.serve_process import Load, ServeProcess, ingest_world
from testkit.servers import AUTH

MIB = 1024 * 1024


def rss_mib(server: ServeProcess) -> float:
    """Summed resident memory of the server's processes (rollout workers come and go with the load)."""
    total = 0
    for proc in server.processes():
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / MIB


def asker(questions: list[str]):
    def ask(http: httpx.Client, k: int, i: int):
        question = questions[(k * 7919 + i) % len(questions)]
        return http.post("/v1/query", json={"question": question, "verbalize": False, "seed": i}), question

    return ask


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    if not seconds:
        return float("nan"), float("nan")
    ms = np.asarray(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def soak(
    server: ServeProcess, questions: list[str], clients: int, seconds: float, max_requests: int, windows: int
) -> dict:
    """Ask for `seconds` (or until max_requests are answered or refused), cut into `windows` equal
    spans of time; each window's answers, latency and the RSS at its end."""
    span = seconds / windows
    rows = []
    with Load(server.url, clients, asker(questions)) as load:
        start = time.monotonic()
        for w in range(windows):
            end = start + (w + 1) * span
            while time.monotonic() < end and load.sent < max_requests:
                time.sleep(0.2)
            now = time.monotonic()
            done = [d for d in load.ok if start + w * span <= d.at < now]
            p50, p99 = percentiles_ms([d.seconds for d in done])
            rows.append({"window": w + 1, "answered": len(done), "p50": p50, "p99": p99, "rss": rss_mib(server)})
            print(f"soak window {w + 1}: {rows[-1]}", flush=True)
            if load.sent >= max_requests:
                break
    return {"sent": load.sent, "failed": load.failed, "windows": rows, "seconds": time.monotonic() - start}


def replica_kills(server: ServeProcess, questions: list[str], clients: int, rounds: int, settle_s: float) -> dict:
    """Kill the Pipeline replica's process `rounds` times under load; each round waits until Serve
    has a new replica that has answered, then `settle_s` more."""
    replaced = 0
    with Load(server.url, clients, asker(questions)) as load:
        load.wait_for(20, timeout_s=120)
        for _ in range(rounds):
            killed = server.replica_pids("Pipeline")
            for pid in killed:
                try:
                    psutil.Process(pid).kill()
                except psutil.NoSuchProcess:  # already gone: Serve is replacing it
                    pass
            moment = time.monotonic()
            deadline = moment + 180
            while time.monotonic() < deadline:
                if set(server.replica_pids("Pipeline")) - set(killed) and load.ok_since(moment) >= 10:
                    replaced += 1
                    break
                time.sleep(0.5)
            time.sleep(settle_s)
    return {"sent": load.sent, "failed": load.failed, "kills": rounds, "replaced": replaced}


def ingest_fact(http: httpx.Client, k: int, i: int):
    body = {"triples": [{"head": f"crate {k}-{i}", "relation": "made of", "tail": "wood", "source": f"soak:{k}-{i}"}]}
    return http.post("/v1/ingest", json=body), f"crate {k}-{i}"


def kill_mid_ingest(server: ServeProcess, home: Path, clients: int, acks: int) -> dict:
    """Ingest distinct facts until `acks` are acknowledged, kill -9 the whole tree, restart on the
    same home and look every acknowledged fact up."""
    with Load(server.url, clients, ingest_fact) as load:
        load.wait_for(acks, timeout_s=600)
        load.stop.set()  # no new requests; those in flight stay in flight
        killed = server.kill()
    acknowledged = [d.sent for d in load.ok]
    refused = [f for f in load.failed if f[1].startswith("HTTP ")]  # an answer other than 200 before the kill
    cut = [f for f in load.failed if not f[1].startswith("HTTP ")]  # in flight at the kill
    restarted = ServeProcess(home).start()
    try:
        with httpx.Client(base_url=restarted.url, headers=AUTH, timeout=120) as http:
            found = sum(http.get(f"/v1/graph/entities/{name}").status_code == 200 for name in acknowledged)
            health = http.get("/healthz").json()["graph"]
            answered = (
                http.post("/v1/query", json={"question": world_questions()[0].question, "verbalize": False}).status_code
                == 200
            )
    finally:
        restarted.close()
    snapshot = GraphStore(
        Settings(home=home)
    )  # read beside no server: the snapshot as the kill left it, plus the restart's reads
    stored = snapshot.stats().model_dump()
    crates = [n for n in snapshot.graph.nodes if n.startswith("crate ")]
    return {
        "sent": len(acknowledged) + len(refused) + len(cut),
        "acknowledged": len(acknowledged),
        "found": found,
        "refused": refused,
        "cut": len(cut),
        "killed": killed,
        "stored": len(crates),
        "half_written": sum(len(snapshot.neighbours(n)) != 1 for n in crates),
        "consistent": stored == health,
        "answered": answered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="client threads in each phase")
    parser.add_argument("--soak-seconds", type=float, default=120, help="length of the soak")
    parser.add_argument("--soak-requests", type=int, default=5000, help="cap on the soak's requests")
    parser.add_argument("--windows", type=int, default=10, help="time windows the soak is cut into")
    parser.add_argument("--replica-kills", type=int, default=3, help="times the Pipeline replica is killed")
    parser.add_argument(
        "--settle-seconds", type=float, default=5, help="load after each replacement before the next kill"
    )
    parser.add_argument("--acks", type=int, default=200, help="acknowledged ingests before the kill -9")
    parser.add_argument("--name", default="reliability", help="results file: bench/results/NAME.md")
    args = parser.parse_args()

    from reverie.encoders import TextEncoder

    started = time.monotonic()
    home = fresh_home("reliability")
    ingest_world(home, TextEncoder())
    questions = [q.question for q in world_questions()]
    server = ServeProcess(home).start()
    try:
        soaked = soak(server, questions, args.clients, args.soak_seconds, args.soak_requests, args.windows)
        replica = replica_kills(server, questions, args.clients, args.replica_kills, args.settle_seconds)
        crash = kill_mid_ingest(server, home, args.clients, args.acks)
    finally:
        server.close()
        shutil.rmtree(home, ignore_errors=True)
    first, last = soaked["windows"][0], soaked["windows"][-1]
    rows = [
        [
            "soak (questions)",
            soaked["sent"],
            len(soaked["failed"]),
            "—",
            "—",
            f"{first['rss']:.0f} → {last['rss']:.0f}",
            f"{first['p50']:.0f} → {last['p50']:.0f}",
            f"{first['p99']:.0f} → {last['p99']:.0f}",
        ],
        [
            f"Pipeline replica killed {replica['kills']}× (questions)",
            replica["sent"],
            len(replica["failed"]),
            "—",
            "—",
            "—",
            "—",
            "—",
        ],
        [
            "kill -9 of the server mid-ingest",
            crash["sent"],
            len(crash["refused"]),
            crash["acknowledged"],
            crash["found"],
            "—",
            "—",
            "—",
        ],
    ]
    series = "\n".join(
        f"| {w['window']} | {w['answered']} | {w['p50']:.0f} | {w['p99']:.0f} | {w['rss']:.0f} |"
        for w in soaked["windows"]
    )
    write_table(
        args.name,
        "Reliability of `reverie serve` on 127.0.0.1: soak, a killed replica, kill -9 mid-ingest",
        f"python -m bench.reliability --clients {args.clients} --soak-seconds {args.soak_seconds:g} --soak-requests {args.soak_requests} "
        f"--windows {args.windows} --replica-kills {args.replica_kills} --acks {args.acks}",
        [
            "scenario",
            "requests sent",
            "failures",
            "ingests acknowledged",
            "acknowledged found after restart",
            "RSS MiB, first → last window",
            "p50 ms, first → last",
            "p99 ms, first → last",
        ],
        rows,
        notes=f"""
{args.clients} client threads per phase, each with its own connection; questions without the LLM (template sentences);
one `reverie serve` with its own Ray cluster, over the built-in world; total {(time.monotonic() - started) / 60:.1f} min.

Soak: {soaked["seconds"]:.0f} s in {len(soaked["windows"])} windows. RSS is the sum over every process of the server and its
Ray cluster (driver, GCS, raylet, agents, Serve replicas, actors, rollout workers) at the end of each window.

| window | answered | p50 ms | p99 ms | RSS MiB |
| --- | --- | --- | --- | --- |
{series}

Replica kill: the Pipeline replica's process got SIGKILL under load {replica["kills"]} times, and Serve had a new replica
answering after {replica["replaced"]} of them; the ingress sends a read (a question) once more when its replica dies.

kill -9: after {crash["acknowledged"]} acknowledged ingests, {crash["killed"]} processes were stopped and killed at once;
{crash["cut"]} ingests were cut off in flight. After a restart on the same home, {crash["found"]} of the
{crash["acknowledged"]} acknowledged facts were there ({crash["stored"]} stored in all: a cut-off ingest may have been
written before its reply was lost); {crash["half_written"]} crates without their fact; snapshot and server agree:
{crash["consistent"]}; the restarted server answered a question: {crash["answered"]}.
Failures in the kill -9 row are answers other than 200 before the kill (requests cut off by the kill are not counted).
""",
    )
    if soaked["failed"] or replica["failed"] or crash["refused"]:
        print("failures:", (soaked["failed"] + replica["failed"] + crash["refused"])[:5], flush=True)


if __name__ == "__main__":
    main()
