"""Latency and throughput of POST /v1/query through Ray Serve on 127.0.0.1.

A load generator on this machine keeps 1, 4 and 16 clients busy (each a thread with its own HTTP
connection), bounded by a request count and a time limit per cell, on two graphs:
- the built-in world, whose questions the embedding walker answers;
- UMLS, whose questions ("what does steroid interact with?", from the test split) the path policy
  answers after a short PPO run (`--policy-minutes`);
each with and without the LLM step. The client, the server and the rollouts share the 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import ray

from bench.common import fresh_home, write_table
from reverie.actors import NAMESPACE
from reverie.config import Settings
from reverie.data import load_dataset
from reverie.data.world import world_questions
from reverie.graph_store.store import display
from reverie.home import Home
from reverie.pipeline import Pipeline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def umls_questions(limit: int) -> list[str]:
    test = load_dataset("umls").test
    rng = np.random.default_rng(0)
    picks = rng.choice(len(test), size=min(limit, len(test)), replace=False)
    return [f"What does {display(test[i].head)} {display(test[i].relation)}?" for i in picks]


def drive(callers: int, ask: Callable[[int, int], bool], max_requests: int, max_seconds: float) -> dict:
    """Keep `callers` threads asking until max_requests are sent or max_seconds pass. `ask(caller, i)`
    sends request i and says whether it succeeded."""
    latencies: list[float] = []
    errors = [0]
    sent = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def caller(k: int) -> None:
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    return
                i = sent[0]
                sent[0] += 1
            start = time.perf_counter()
            ok = ask(k, i)
            took = time.perf_counter() - start
            with lock:
                if ok:
                    latencies.append(took)
                else:
                    errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "ok": len(latencies),
        "errors": errors[0],
        "wall": wall,
        "p50": np.percentile(ms, 50),
        "p99": np.percentile(ms, 99),
        "rps": len(latencies) / wall,
    }


def load(url: str, questions: list[str], clients: int, verbalize: bool, max_requests: int, max_seconds: float) -> dict:
    """POST /v1/query from `clients` clients, each with its own HTTP connection."""
    https = [httpx.Client(base_url=url, timeout=300) for _ in range(clients)]

    def ask(k: int, i: int) -> bool:
        reply = https[k].post(
            "/v1/query", json={"question": questions[i % len(questions)], "verbalize": verbalize, "seed": i}
        )
        return reply.status_code == 200

    try:
        return drive(clients, ask, max_requests, max_seconds)
    finally:
        for http in https:
            http.close()


def in_process(pipeline: Pipeline, questions: list[str], callers: int, max_requests: int, max_seconds: float) -> dict:
    """The ceiling: the same Pipeline called from this process (as `reverie ask` runs it), no HTTP, no Serve."""
    from reverie.schemas import Query

    def ask(k: int, i: int) -> bool:
        pipeline.answer(Query(question=questions[i % len(questions)], verbalize=False, seed=i))
        return True

    return drive(callers, ask, max_requests, max_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="cap per cell without the LLM")
    parser.add_argument("--llm-requests", type=int, default=32, help="cap per cell with the LLM")
    parser.add_argument("--seconds", type=float, default=45, help="time limit per cell")
    parser.add_argument("--policy-minutes", type=float, default=2.0, help="PPO time for the UMLS policy")
    parser.add_argument("--graphs", nargs="+", default=["world", "UMLS"], choices=["world", "UMLS"])
    parser.add_argument(
        "--student-from",
        type=Path,
        default=None,
        help="a home with a trained student (`reverie train student`): it says the answers instead of SmolLM2",
    )
    parser.add_argument("--name", default="serve", help="bench/results/NAME.md")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from ray import serve

    from reverie.agents.path_policy.config import PolicyTrainConfig
    from reverie.agents.path_policy.train import train_policy
    from reverie.serve.app import run

    settings = Settings(home=fresh_home(args.name), port=free_port())
    if args.student_from is not None:
        student = Home(args.student_from).student
        if not (student / "config.json").is_file():
            parser.error(f"no student in {args.student_from}: run `reverie train student` there first")
        shutil.copytree(student, Home(settings.home).student)
        settings = settings.model_copy(update={"llm_backends": ["student"]})
    speaker = "the student" if args.student_from is not None else "SmolLM2-135M"
    ray.init(
        address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    pipeline = Pipeline(settings)
    pipeline.ingest_dataset(load_dataset("world"))
    pipeline.ingest_dataset(load_dataset("umls"))
    train_start = time.perf_counter()
    train_policy(
        settings,
        PolicyTrainConfig(dataset="umls", iterations=10_000, minutes=args.policy_minutes).replace(env={"hops": 2}),
    )
    train_s = time.perf_counter() - train_start
    every_graph = {"world": lambda: [q.question for q in world_questions()], "UMLS": lambda: umls_questions(200)}
    graphs = {graph: every_graph[graph]() for graph in args.graphs}
    # The ceiling, in this run: the Pipeline in this process, its encoder on 1 or 2 threads, from 1
    # thread and from as many threads as the most clients; the best rate counts.
    ceiling: dict[str, float] = {}
    ceiling_rows = []
    for threads in (1, 2):
        local = Pipeline(settings.model_copy(update={"model_threads": threads}))
        local.services.warm_up(llm=False)
        for graph, questions in graphs.items():
            in_process(local, questions, 2, 8, 60)  # warm
            for callers in (1, max(args.clients)):
                r = in_process(local, questions, callers, args.requests, args.seconds)
                ceiling[graph] = max(ceiling.get(graph, 0.0), r["rps"])
                ceiling_rows.append(
                    [graph, threads, callers, r["ok"], f"{r['p50']:.0f}", f"{r['p99']:.0f}", f"{r['rps']:.2f}"]
                )
                print("in-process", ceiling_rows[-1], flush=True)
    url = run(settings)
    rows = []
    for graph, questions in graphs.items():
        asked = 0  # with the LLM, each cell starts at questions no earlier cell asked (while there are any)
        for verbalize in (False, True):
            cap = args.llm_requests if verbalize else args.requests
            load(url, questions, 2, verbalize, 4, 60)  # warm: workers, caches, the policy's first load
            asked += 4 if verbalize else 0
            for clients in args.clients:
                fresh = (
                    questions[asked % len(questions) :] + questions[: asked % len(questions)]
                    if verbalize
                    else questions
                )
                r = load(url, fresh, clients, verbalize, cap, args.seconds)
                asked += r["ok"] + r["errors"] if verbalize else 0
                share = "" if verbalize else f"{r['rps'] / ceiling[graph]:.2f}"
                rows.append(
                    [
                        graph,
                        "yes" if verbalize else "no",
                        clients,
                        r["ok"],
                        r["errors"],
                        f"{r['p50']:.0f}",
                        f"{r['p99']:.0f}",
                        f"{r['rps']:.2f}",
                        share,
                    ]
                )
                print(rows[-1], flush=True)
    policy = httpx.post(
        f"{url}/v1/query", json={"question": every_graph["UMLS"]()[0], "verbalize": False}, timeout=300
    ).json()["policy"]
    serve.shutdown()
    ray.shutdown()

    def cell(graph: str, llm: str, clients: int) -> list:
        return next(r for r in rows if r[0] == graph and r[1] == llm and r[2] == clients)

    most, fewest = max(args.clients), min(args.clients)
    before_llm = {"world": 0.42, "UMLS": 0.29}  # requests/s with the LLM at 16 clients, bench/results/serve_before.md
    goals = []
    for graph in graphs:
        one, many = cell(graph, "no", fewest), cell(graph, "no", most)
        goals.append(
            f"- {graph}: {many[8]} of the ceiling at {most} clients (goal ≥ 0.7), p50 {one[5]} ms at {fewest} client "
            f"(goal ≤ 50), p99 {many[6]} ms at {most} clients (goal ≤ 500); with the LLM {cell(graph, 'yes', most)[7]} requests/s "
            f"at {most} clients, {float(cell(graph, 'yes', most)[7]) / before_llm[graph]:.1f}× the {before_llm[graph]} before (goal ≥ 3×)."
        )
    ceiling_table = "\n".join(
        [
            "| graph | encoder threads | callers | answers | p50 ms | p99 ms | answers/s |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        + ["| " + " | ".join(map(str, r)) + " |" for r in ceiling_rows]
    )
    if args.student_from is not None and "UMLS" in graphs:
        rate = float(cell("UMLS", "yes", most)[7])
        goals.append(
            f"- with the student as verbaliser: UMLS at {most} clients {rate:.2f} requests/s, {rate / 1.13:.1f}× the "
            f"1.13 with SmolLM2 (bench/results/serve.md; goal ≥ 10×)."
        )
    goal_lines = "\n".join(goals)
    write_table(
        args.name,
        "POST /v1/query through Ray Serve on 127.0.0.1: latency and throughput",
        "python -m bench.serve " + " ".join(sys.argv[1:]),
        ["graph", "LLM", "clients", "requests ok", "errors", "p50 ms", "p99 ms", "requests/s", "of the ceiling"],
        rows,
        notes=f"""
{goal_lines}

The ceiling is the same `Pipeline` called in the benchmark's own process (as `reverie ask` runs it: no HTTP, no
Serve), in the same run, before Serve starts; its best rate per graph is the ceiling:

{ceiling_table}

Each cell stops at its request cap ({args.requests} without the LLM, {args.llm_requests} with it) or after {args.seconds:g} s.
The load generator, Serve (as `reverie serve` starts it: one ReverieAPI and one LLM replica, Pipeline and
TextEncoder autoscaling from 1 to 2) and the actors share this machine's 2 cores. World questions: the {len(every_graph["world"]())} built-in
questions, answered by the embedding walker (64 rollouts, dreamt in the Pipeline's process: below
`REVERIE_LOCAL_ROLLOUTS_MAX`). UMLS questions: 200 test-split facts asked as "What does HEAD RELATION?", answered by
`{policy}` (PPO for {train_s / 60:.1f} min including the world model, 64 sampled rollouts, arbitrated with the world model).
Graphs measured in this run: {", ".join(graphs)}.
"LLM: yes" adds {speaker}'s answer sentence: concurrent sentences are generated as one batch, stopping at the
end of the first sentence, and a reply already written for the same prompt comes from the LLM's cache. Each LLM
cell starts at questions no earlier cell asked: UMLS's {len(every_graph["UMLS"]())} are new to the cache in every LLM cell; the world's
{len(every_graph["world"]())} come round again, so its LLM cells show the cache at work on repeated questions.
""",
    )


if __name__ == "__main__":
    main()
