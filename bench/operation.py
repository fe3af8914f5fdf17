"""Reverie in operation, measured as a user meets it on the built-in world (283 entities):

- one-shot CLI calls without a server: `reverie stats` (no Ray) and `reverie ask --no-llm`, with the
  start-up of `ask` split into its parts (Python and imports, Ray, the actors and their models, the question);
- `reverie serve`: time to ready, what /healthz says meanwhile, the first question against the tenth
  (with the LLM), memory per process (PSS: shared pages count once) when ready and after questions;
- the CLI through the running server: `reverie stats`, `reverie ask --no-llm`, `reverie ask`;
- SIGTERM: time to exit and the exit code.

    python -m bench.operation            -> bench/results/operation.md and operation.json
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench.common import RESULTS, fresh_home, write_table
from reverie.data.world import world_questions

QUESTION = "What happens when you drop a glass cup?"


def env(home: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
    return {**base, "REVERIE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def cli_seconds(home: Path, *args: str, runs: int = 3) -> tuple[float, str]:
    """Median wall seconds of `reverie ARGS` over `runs`, and its last output."""
    times, out = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "reverie.cli", *args], env=env(home), capture_output=True, text=True, timeout=600
        )
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise RuntimeError(f"reverie {' '.join(args)} failed: {done.stderr[-2000:]}")
        out = done.stdout
    return statistics.median(times), out


ASK_PARTS = r"""
import json, sys, time
t0 = time.perf_counter()
from reverie.api import Reverie
from reverie.config import get_settings
import ray  # what `reverie ask` imports before it starts anything
t1 = time.perf_counter()
from reverie.actors import init_ray
settings = get_settings()
init_ray(settings)
t2 = time.perf_counter()
rv = Reverie.from_settings(settings)
query = rv.query(sys.argv[1], verbalize=sys.argv[2] == "llm", seed=0)
rv.warm_up(llm=False)
t3 = time.perf_counter()
if query.verbalize:
    rv.warm_up(llm=True)
t4 = time.perf_counter()
verdict = rv.ask(query)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "ray": t2 - t1, "actors": t3 - t2, "llm": t4 - t3, "question": t5 - t4}))
"""


def ask_parts(home: Path, llm: bool) -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", ASK_PARTS, QUESTION, "llm" if llm else "none"],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    parts["python start and exit"] = wall - sum(parts.values())
    parts["wall"] = wall
    return parts


def memory(root: int) -> list[tuple[str, float]]:
    """(process, PSS in MB) of `reverie serve` and every process under it."""
    rows = []
    proc = psutil.Process(root)
    for p in [proc, *proc.children(recursive=True)]:
        try:
            title = " ".join(p.cmdline())
            pss = p.memory_full_info().pss / 2**20
        except psutil.Error:
            continue
        if "reverie serve" in title or "reverie.cli serve" in title:
            name = "reverie serve (driver)"
        elif title.startswith("ray::"):
            name = title.split()[0].removeprefix("ray::").split(".")[0]
        else:
            name = Path(title.split()[0]).name + (" " + Path(title.split()[1]).name if len(title.split()) > 1 else "")
            name = name.replace("python3 -u", "python3")
        rows.append((name[:60], pss))
    return sorted(rows, key=lambda r: -r[1])


def serve(home: Path, port: int):
    log = open(home / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reverie.cli", "serve", "--port", str(port)],
        env=env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc


def main() -> None:
    home = fresh_home("operation")
    subprocess.run(
        [sys.executable, "-m", "reverie.cli", "ingest", "--dataset", "world", "--quiet", "--local"],
        env=env(home),
        check=True,
        capture_output=True,
    )
    results: dict = {}

    # ---- without a server ----
    results["stats_alone_s"], _ = cli_seconds(home, "stats")
    results["ask_alone_s"], _ = cli_seconds(home, "ask", QUESTION, "--no-llm", runs=2)
    results["ask_parts_no_llm"] = ask_parts(home, llm=False)
    ask_parts(home, llm=True)  # the first load converts the GGUF and caches a safetensors copy in the home
    results["ask_parts_llm"] = ask_parts(home, llm=True)

    # ---- a server ----
    port = 8790
    url = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    proc = serve(home, port)
    first_503 = first_ok = None
    while first_ok is None:
        if proc.poll() is not None:
            raise RuntimeError((home / "serve.log").read_text()[-3000:])
        try:
            reply = httpx.get(f"{url}/healthz", timeout=10)
            if reply.status_code == 503 and first_503 is None:
                first_503 = time.monotonic() - began
            elif reply.status_code == 200:
                first_ok = time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    while "Reverie is serving on" not in (home / "serve.log").read_text():
        time.sleep(0.1)
    results["serve"] = {"healthz_503_from_s": first_503, "healthz_200_at_s": first_ok}
    results["memory_ready"] = memory(proc.pid)

    questions = [q.question for q in world_questions(12)][1:11]  # ten questions the CLI runs do not ask
    latencies = []
    with httpx.Client(base_url=url, timeout=300) as http:
        for i, question in enumerate(questions):
            start = time.perf_counter()
            reply = http.post("/v1/query", json={"question": question, "seed": i})
            latencies.append((time.perf_counter() - start, reply.json().get("backend"), reply.json().get("timings_ms")))
    results["questions"] = [{"seconds": s, "backend": b, "timings_ms": t} for s, b, t in latencies]
    results["memory_after_questions"] = memory(proc.pid)

    results["stats_through_server_s"], _ = cli_seconds(home, "stats", runs=5)
    results["ask_through_server_s"], _ = cli_seconds(home, "ask", QUESTION, "--no-llm", runs=5)
    results["ask_llm_through_server_s"], _ = cli_seconds(home, "ask", QUESTION, runs=3)

    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=120)
    results["sigterm"] = {"exit_code": code, "seconds": time.monotonic() - start}
    results["last_line"] = (home / "serve.log").read_text().strip().splitlines()[-1]
    (RESULTS / "operation.json").write_text(json.dumps(results, indent=2))
    report(results)


def report(r: dict) -> None:
    def total(rows):
        return sum(pss for _, pss in rows)

    q = r["questions"]
    rows = [
        ["`reverie stats`, no server (no Ray)", f"{r['stats_alone_s']:.2f} s", "≤ 3 s"],
        ["`reverie ask --no-llm`, no server", f"{r['ask_alone_s']:.1f} s", "parts below"],
        ["`reverie stats` through the server", f"{r['stats_through_server_s']:.2f} s", "≤ 1 s"],
        ["`reverie ask --no-llm` through the server", f"{r['ask_through_server_s']:.2f} s", "≤ 1.5 s"],
        ["`reverie ask` (LLM) through the server", f"{r['ask_llm_through_server_s']:.2f} s", ""],
        [
            "`reverie serve`: /healthz 503 from / 200 at",
            f"{r['serve']['healthz_503_from_s']:.1f} s / {r['serve']['healthz_200_at_s']:.1f} s",
            "503 until ready",
        ],
        [
            "first question / median of 2nd–10th (LLM)",
            f"{q[0]['seconds']:.2f} s ({q[0]['backend']}) / {statistics.median(x['seconds'] for x in q[1:]):.2f} s",
            "first as fast as the tenth",
        ],
        ["memory when ready (PSS, all processes)", f"{total(r['memory_ready']) / 1024:.2f} GB", "≤ 2 GB"],
        ["memory after 10 questions (PSS)", f"{total(r['memory_after_questions']) / 1024:.2f} GB", "≤ 2 GB"],
        ["SIGTERM: exit code, seconds", f"{r['sigterm']['exit_code']}, {r['sigterm']['seconds']:.1f} s", "0"],
    ]
    parts = r["ask_parts_no_llm"]
    llm = r["ask_parts_llm"]
    part_rows = "\n".join(
        f"| {name} | {parts[key]:.1f} s | {llm[key]:.1f} s |"
        for name, key in [
            ("Python start, and at exit Ray's shutdown", "python start and exit"),
            ("imports (reverie, Ray)", "imports"),
            ("Ray: a local single-node cluster", "ray"),
            ("actors: text encoder (MiniLM), graph store (snapshot, index)", "actors"),
            ("LLM load (from its safetensors copy in the home)", "llm"),
            ("the question itself", "question"),
            ("wall", "wall"),
        ]
    )
    memory_rows = "\n".join(f"| {name} | {pss:.0f} |" for name, pss in r["memory_after_questions"] if pss >= 1)
    notes = f"""
Start-up of a one-shot `reverie ask` without a server, by part:

| part | `--no-llm` | with the LLM |
| --- | --- | --- |
{part_rows}

Memory of `reverie serve` per process after ten questions (PSS, MB; shared pages count once):

| process | PSS MB |
| --- | --- |
{memory_rows}

The server's last line on SIGTERM: `{r["last_line"]}`
"""
    write_table(
        "operation",
        "Reverie in operation: CLI start-up, readiness, memory, shutdown (built-in world)",
        "python -m bench.operation",
        ["measure", "value", "goal"],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
