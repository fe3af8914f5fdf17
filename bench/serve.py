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
import socket
import threading
import time

import httpx
import numpy as np
import ray

from bench.common import fresh_home, write_table
from reverie.actors import NAMESPACE
from reverie.config import Settings
from reverie.graph_store import load_dataset
from reverie.graph_store.store import display
from reverie.graph_store.world import world_questions
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


def load(url: str, questions: list[str], clients: int, verbalize: bool, max_requests: int, max_seconds: float) -> dict:
    """Keep `clients` requests in flight until max_requests are sent or max_seconds pass."""
    latencies: list[float] = []
    errors = [0]
    sent = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + max_seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while time.perf_counter() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    i = sent[0]
                    sent[0] += 1
                body = {"question": questions[i % len(questions)], "verbalize": verbalize, "seed": i}
                start = time.perf_counter()
                reply = http.post("/v1/query", json=body)
                took = time.perf_counter() - start
                with lock:
                    if reply.status_code == 200:
                        latencies.append(took)
                    else:
                        errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"ok": len(latencies), "errors": errors[0], "wall": wall, "p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "rps": len(latencies) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="cap per cell without the LLM")
    parser.add_argument("--llm-requests", type=int, default=32, help="cap per cell with the LLM")
    parser.add_argument("--seconds", type=float, default=45, help="time limit per cell")
    parser.add_argument("--policy-minutes", type=float, default=2.0, help="PPO time for the UMLS policy")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from ray import serve

    from reverie.policies.config import PolicyTrainConfig
    from reverie.policies.train import train_policy
    from reverie.serve.app import run

    settings = Settings(home=fresh_home("serve"), port=free_port())
    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pipeline = Pipeline(settings)
    pipeline.ingest_dataset(load_dataset("world"))
    pipeline.ingest_dataset(load_dataset("umls"))
    train_start = time.perf_counter()
    train_policy(settings, PolicyTrainConfig(dataset="umls", iterations=10_000, minutes=args.policy_minutes).replace(env={"hops": 2}))
    train_s = time.perf_counter() - train_start
    url = run(settings)
    graphs = {"world": [q.question for q in world_questions()], "UMLS": umls_questions(200)}
    rows = []
    for graph, questions in graphs.items():
        for verbalize in (False, True):
            cap = args.llm_requests if verbalize else args.requests
            load(url, questions, 2, verbalize, 4, 60)  # warm: workers, caches, the policy's first load
            for clients in args.clients:
                r = load(url, questions, clients, verbalize, cap, args.seconds)
                rows.append([graph, "yes" if verbalize else "no", clients, r["ok"], r["errors"], f"{r['p50']:.0f}", f"{r['p99']:.0f}", f"{r['rps']:.2f}"])
                print(rows[-1], flush=True)
    policy = httpx.post(f"{url}/v1/query", json={"question": graphs["UMLS"][0], "verbalize": False}, timeout=300).json()["policy"]
    serve.shutdown()
    ray.shutdown()
    write_table(
        "serve",
        "POST /v1/query through Ray Serve on 127.0.0.1: latency and throughput",
        f"python -m bench.serve --clients {' '.join(map(str, args.clients))} --requests {args.requests} --llm-requests {args.llm_requests} --seconds {args.seconds:g} --policy-minutes {args.policy_minutes:g}",
        ["graph", "LLM", "clients", "requests ok", "errors", "p50 ms", "p99 ms", "requests/s"],
        rows,
        notes=f"""
Each cell stops at its request cap ({args.requests} without the LLM, {args.llm_requests} with it) or after {args.seconds:g} s.
The load generator, Serve (as `reverie serve` starts it: one ReverieAPI and one LLM replica, Pipeline and
TextEncoder autoscaling from 1 to 2) and the rollout tasks share this machine's 2 cores: without the LLM,
throughput stays at 10-14 requests/s from 1 to 16 clients, and latency grows with the queue. World questions: the {len(graphs['world'])} built-in
questions, answered by the embedding walker (64 rollouts). UMLS questions: 200 test-split facts asked as
"What does HEAD RELATION?", answered by `{policy}` (PPO for {train_s / 60:.1f} min including the world model,
64 sampled rollouts, arbitrated with the world model). "LLM: yes" adds SmolLM2-135M's answer sentence,
generated on CPU in about 2 s, which bounds throughput at about 0.4 requests/s whatever the number of clients.
""",
    )


if __name__ == "__main__":
    main()
