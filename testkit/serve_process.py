"""What the fault tests and bench/reliability.py share: `reverie serve` run as a user runs it, in
a subprocess they can kill -9 whole, and client threads that load it.

Each server has its own REVERIE_HOME, port and local Ray cluster: `reverie serve` starts a fresh
single-node Ray, and its own RAY_TMPDIR keeps that cluster's sessions, sockets and logs apart. Its
processes are the subprocess's descendants (the driver, GCS, raylet, workers and agents) and any
process whose environment names its RAY_TMPDIR (a worker the raylet started and then orphaned), so
a kill reaches them and nothing of another cluster, such as the pytest session's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from testkit.servers import API_KEY, AUTH, free_port

READY_LINE = "Reverie is serving on"


class ServeProcess:
    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="rvf-"))  # short: Ray's socket paths live under it
        self.log_path = self.ray_tmp / "serve.log"
        self.env = {
            **os.environ,
            "REVERIE_HOME": str(self.home),
            "REVERIE_API_KEY": API_KEY,
            "RAY_TMPDIR": str(self.ray_tmp),
            # The LLM is an Ollama server nobody runs: the server starts without loading the bundled
            # model, and an answer's sentence falls back to the template.
            "REVERIE_LLM_BACKENDS": '["ollama"]',
            "REVERIE_OLLAMA_HOST": f"http://127.0.0.1:{free_port()}",
            "REVERIE_OLLAMA_TIMEOUT_S": "2",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def launch(self) -> "ServeProcess":
        """Start `reverie serve` in its own session (a terminal's Ctrl-C would reach its whole group)."""
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reverie.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def start(self, timeout_s: float = 300) -> "ServeProcess":
        """Start `reverie serve` and wait until it says it serves and /healthz answers."""
        self.launch()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`reverie serve` exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            if READY_LINE in self.log():
                try:
                    if httpx.get(f"{self.url}/healthz", headers=AUTH, timeout=10).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        self.kill()
        raise TimeoutError(f"`reverie serve` was not ready in {timeout_s:.0f} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def processes(self) -> list[psutil.Process]:
        """Every live process of this server and its Ray cluster."""
        found: dict[int, psutil.Process] = {}
        if self.process is not None:
            try:
                root = psutil.Process(self.process.pid)
                found.update({p.pid: p for p in [root, *root.children(recursive=True)]})
            except psutil.NoSuchProcess:
                pass
        for proc in psutil.process_iter():
            try:
                if proc.pid not in found and proc.environ().get("RAY_TMPDIR") == str(self.ray_tmp):
                    found[proc.pid] = proc
            except psutil.Error:
                pass
        return [p for p in found.values() if _running(p)]

    def replica_pids(self, deployment: str) -> list[int]:
        """Processes of the deployment's Serve replicas (Ray names a worker's process after its actor)."""
        title = f"ray::ServeReplica:reverie:{deployment}"
        pids = []
        for proc in self.processes():
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if cmdline.startswith(title):
                pids.append(proc.pid)
        return sorted(pids)

    def kill(self) -> int:
        """kill -9 of the whole tree, as a crash of the machine would: every process is stopped
        first (so a raylet cannot start a worker, nor a driver notice, while the others die), then
        killed. Returns how many processes were killed."""
        stopped: dict[int, psutil.Process] = {}
        while fresh := [p for p in self.processes() if p.pid not in stopped]:
            for proc in fresh:
                _signal(proc, signal.SIGSTOP)
                stopped[proc.pid] = proc
        for proc in stopped.values():
            _signal(proc, signal.SIGKILL)
        psutil.wait_procs(list(stopped.values()), timeout=30)
        if self.process is not None:
            self.process.wait(timeout=30)
        return len(stopped)

    def close(self) -> None:
        """Kill what is left and remove the Ray folder (the REVERIE_HOME stays)."""
        self.kill()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def ingest_world(home: Path, encoder) -> None:
    """Write the built-in world into `home` without Ray (GraphStore and a TextEncoder in this
    process), as `reverie ingest --dataset world` would."""
    from reverie.config import Settings
    from reverie.data.kg import load_dataset
    from reverie.graph_store import GraphStore

    world = load_dataset("world")
    store = GraphStore(Settings(home=home))
    plan = store.plan(world.graph, world.entities)
    store.apply(plan, encoder.encode(plan.entity_texts), encoder.encode(plan.relation_texts))
    store.close()


@dataclass
class Done:
    """One answered request: when it finished (time.monotonic), what it sent, how long it took."""

    at: float
    sent: str
    seconds: float


class Load:
    """Client threads, each with its own connection, sending requests until stopped.
    `request(http, client, i)` sends the client's i-th request and returns (reply, what it sent)."""

    def __init__(self, url: str, clients: int, request):
        self.url, self.request = url, request
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[Done] = []  # each 200
        self.failed: list[tuple[str, str]] = []  # (what, why): an HTTP status, or the client's error
        self.threads = [threading.Thread(target=self._client, args=(k,)) for k in range(clients)]

    def _client(self, k: int) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=120) as http:
            i = 0
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    reply, sent = self.request(http, k, i)
                    failure = None if reply.status_code == 200 else f"HTTP {reply.status_code}: {reply.text[:300]}"
                except httpx.HTTPError as exc:
                    sent, failure = f"request {k}-{i}", f"{type(exc).__name__}: {exc}"
                end = time.monotonic()
                with self.lock:
                    if failure:
                        self.failed.append((sent, failure))
                    else:
                        self.ok.append(Done(end, sent, end - start))
                i += 1

    @property
    def sent(self) -> int:
        return len(self.ok) + len(self.failed)

    def ok_since(self, moment: float) -> int:
        return sum(done.at > moment for done in self.ok)

    def wait_for(self, successes: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.ok) < successes and time.monotonic() < deadline:
            time.sleep(0.1)

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
