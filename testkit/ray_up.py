"""`ray up cluster.yaml` for real on this one machine, over real SSH (`make cluster`, and the test
in tests/test_cluster.py).

Three "machines" share this host, each a set of Linux namespaces of its own (`unshare`, so root):

- the launcher, where `ray up`, `ray exec` and `ray down` run;
- the head, an sshd listening on 127.0.0.1;
- the worker, an sshd listening on 127.0.0.2.

Each has its own home (root's home in a private copy of /etc/passwd, bind-mounted over the real
one in its mount namespace): the launcher's holds the key made for the run in ~/.ssh/id_ed25519,
the path cluster.yaml names, and every home has an ~/.ssh/config with the port of the two sshds
(Ray's config has no ssh port field; a user whose sshd is not on 22 says it the same way).
Each has its own PID namespace, so the `ray stop` in the shipped start commands and in `ray down`
sees only that machine's Ray (never another Ray on this host), and stopping a node's sshd, the
namespace's first process, ends everything that node started. Each has its own RAY_TMPDIR (set by
its sshd), so `--address auto` finds that machine's cluster and nothing else.

The cluster config is derived from the shipped cluster.yaml: only the addresses, the ssh user,
the cluster's name, the install (a link to this checkout's .venv instead of `make install`) and,
in `ray start`, the ports, the node's address and one CPU per node change; every other command
runs as shipped, `ray stop` and the `reverie serve` in the background included (`--no-server`
drops the server, as the test does: a minute of model loading on a small machine).

    python -m testkit.ray_up              # ray up, ingest, ask, print the answer and the nodes, ray down
    python -m testkit.ray_up --keep       # keep the temp dir (derived config, logs) for a look
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import pwd
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "cluster.yaml"
BIN = Path(sys.executable).parent  # the virtualenv's bin: ray, reverie
HEAD_IP, WORKER_IP = "127.0.0.1", "127.0.0.2"
QUESTION = "What happens when you drop a glass cup?"
NODES_MARK = "RAY_UP_NODES "
# Debian package of each program this needs.
TOOLS = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",
    "unshare": "util-linux",
    "mount": "mount",
}
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
# The shipped commands this changes, each found exactly once.
INSTALL = "cd ~/reverie && make install"
HEAD_START = "ray start --head --port=6379"
WORKER_START = "ray start --address=$RAY_HEAD_IP:6379"
SERVE = "reverie --address auto serve"
SERVER_MARK = "RAY_UP_SERVER "


# Drivers on the head run in ~/reverie, as the shipped `reverie serve` does. Ray puts a driver's
# working directory on its workers' sys.path, and in ~ the checkout's folder `reverie` (no
# __init__.py) would shadow the installed package as a namespace package there: reverie/__init__.py
# would never run in the workers, and the text encoder's import of torchvision fails.
HERE = "cd ~/reverie &&"


class RayUpError(RuntimeError):
    """A step failed; the message says which, with the end of its output."""


def missing() -> str | None:
    """Why this cannot run here (one line), or None."""
    lost = [tool for tool in TOOLS if not shutil.which(tool, path=SBIN_PATH)]
    if lost:
        packages = " ".join(dict.fromkeys(TOOLS[t] for t in lost))
        return f"{', '.join(lost)} not found: apt-get install {packages} (`make sshd` does)"
    if os.geteuid() != 0:
        return "needs root: it runs sshd and Ray in namespaces of their own (unshare)"
    return None


# ---- ports ----------------------------------------------------------------------------------------


def _bindable(port: int, host: str = "") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port free on every address (Ray binds 0.0.0.0)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def ssh_port() -> int:
    """A port free on both loopback addresses, for the two sshds."""
    for _ in range(50):
        port = free_port()
        if _bindable(port, HEAD_IP) and _bindable(port, WORKER_IP):
            return port
    raise RayUpError("no port free on both 127.0.0.1 and 127.0.0.2")


def port_range(width: int = 100, taken: tuple[range, ...] = ()) -> range:
    """`width` consecutive free ports, away from Ray's default worker ports (10002-19999) that
    other Ray clusters on this machine use, and from the kernel's ephemeral ports."""
    for _ in range(100):
        start = random.randrange(20000, 30000 - width)
        window = range(start, start + width)
        if not any(set(window) & set(t) for t in taken) and all(_bindable(p) for p in window):
            return window
    raise RayUpError(f"no {width} consecutive free ports in 20000-29999")


def start_flags(ip: str, head: bool, workers: range) -> str:
    """What `ray start` needs beside the shipped flags on a machine that other clusters share:
    the node's own address, one CPU, and free ports for everything with a fixed or shared default."""
    flags = [
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        "--disable-usage-stats",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--min-worker-port={workers.start}",
        f"--max-worker-port={workers.stop - 1}",
    ]
    if head:
        flags += ["--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
    return " ".join(flags)


# ---- the derived config ---------------------------------------------------------------------------


def _swap(commands: list[str], old: str, new: str) -> list[str]:
    hits = [c for c in commands if old in c]
    if len(hits) != 1:
        raise RayUpError(f"cluster.yaml: expected one command with {old!r}, found {len(hits)}")
    return [c.replace(old, new) for c in commands]


def derive_config(
    shipped: dict, *, name: str, gcs_port: int, head_flags: str, worker_flags: str, venv: Path, server: bool = True
) -> dict:
    """The shipped config, pointed at the two loopback machines. Everything else stays as shipped,
    but for the `reverie serve` the head starts when `server` is False (a minute of model loading
    on a small machine)."""
    config = copy.deepcopy(shipped)
    config["cluster_name"] = name
    config["provider"]["head_ip"] = HEAD_IP
    config["provider"]["worker_ips"] = [WORKER_IP]
    config["auth"]["ssh_user"] = pwd.getpwuid(0).pw_name  # the key stays ~/.ssh/id_ed25519
    # This checkout's virtualenv instead of a fresh one per node (no downloads, no minutes of pip).
    config["setup_commands"] = _swap(
        config["setup_commands"], INSTALL, f"ln -sfn {shlex.quote(str(venv))} ~/reverie/.venv"
    )
    config["head_start_ray_commands"] = _swap(
        config["head_start_ray_commands"], HEAD_START, f"ray start --head --port={gcs_port} {head_flags}"
    )
    config["worker_start_ray_commands"] = _swap(
        config["worker_start_ray_commands"], WORKER_START, f"ray start --address=$RAY_HEAD_IP:{gcs_port} {worker_flags}"
    )
    if not server:
        _swap(config["head_start_ray_commands"], SERVE, SERVE)
        config["head_start_ray_commands"] = [c for c in config["head_start_ray_commands"] if SERVE not in c]
    return config


def checkout_copy(target: Path) -> Path:
    """The checkout's files that git would keep (tracked, or new and not ignored), copied to target:
    `ray up` hashes every file under a file mount's source before it syncs (.venv and caches
    included; the rsync filter only applies to the copy), seconds that this copy saves. REPO
    itself when git cannot list them."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return REPO
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


# ---- the machines ---------------------------------------------------------------------------------


@dataclass
class Machine:
    """One "machine": a home, a Ray temp dir and a passwd whose root lives in that home."""

    name: str
    root: Path
    ip: str | None = None  # where its sshd listens; None for the launcher
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def passwd(self) -> Path:
        return self.root / "passwd"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    def prepare(self, public_key: str, port: int) -> None:
        ssh = self.home / ".ssh"
        ssh.mkdir(parents=True, mode=0o700)
        self.tmp.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(public_key)
        # Ray's config has no ssh port: ssh reads it from here, on the launcher and on the head.
        (ssh / "config").write_text(f"Host {HEAD_IP} {WORKER_IP}\n    Port {port}\n")
        for path in ssh.iterdir():
            path.chmod(0o600)
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[2] == "0":
                fields[5] = str(self.home)
            lines.append(":".join(fields))
        self.passwd.write_text("\n".join(lines) + "\n")

    def wrap(self, argv: list[str]) -> list[str]:
        """argv in a PID and mount namespace of this machine's own, with its passwd."""
        script = 'mount --bind "$0" /etc/passwd && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            script,
            str(self.passwd),
            *argv,
        ]

    def start_sshd(self, port: int, env: dict[str, str]) -> None:
        """sshd on self.ip:port, the first process of this machine's namespaces."""
        assert self.ip
        key = self.root / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.ip}:{port}",
                    f"HostKey {key}",
                    "PidFile none",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes yes",
                    "MaxStartups 64",
                    "MaxSessions 64",
                    "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        sshd = shutil.which("sshd", path=SBIN_PATH)
        assert sshd
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                self.wrap([sshd, "-D", "-e", "-f", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection((self.ip, port), timeout=1):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RayUpError(f"sshd on {self.ip}:{port} did not start:\n{_tail(self.log)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """End sshd; the kernel then ends every process in this machine's PID namespace."""
        if self.proc is None:
            return
        _kill_group(self.proc, signal.SIGTERM, grace=10)
        self.proc = None


def _tail(path: Path, chars: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def _kill_group(proc: subprocess.Popen, sig: int, grace: float) -> None:
    """Send sig to the process group proc leads (started with start_new_session), then SIGKILL after
    grace seconds. The group's first process is `unshare --kill-child`: when it dies, the kernel
    kills its namespace's first process, and with it every process of that namespace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


# ---- the run --------------------------------------------------------------------------------------


@dataclass
class Result:
    verdict: dict
    alive: list[dict]  # {"node_id", "ip", "head"} of each alive node, from the head
    seconds: dict[str, float]
    config: dict  # the derived cluster config
    server: int | None = None  # the status of the head's `reverie serve` /healthz; None: not started

    @property
    def nodes(self) -> dict[str, int]:
        return self.verdict["nodes"]

    def report(self) -> str:
        lines = [f"answer: {self.verdict['answer']}  [{self.verdict['answer_entity']}]", "nodes (rollouts per node):"]
        for node in sorted(self.alive, key=lambda n: not n["head"]):
            role = "head" if node["head"] else "worker"
            lines.append(f"  {node['node_id']}  {node['ip']:<15} {role:<6} {self.nodes.get(node['node_id'], 0)}")
        for node_id in set(self.nodes) - {n["node_id"] for n in self.alive}:
            lines.append(f"  {node_id}  (not alive at the start) {self.nodes[node_id]}")
        if self.server is not None:
            answered = "" if self.server == 200 else " (no 200 in time: its log is ~/reverie-serve.log on the head)"
            lines.append(f"reverie serve on the head: /healthz {self.server}{answered}")
        lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


class Cluster:
    """The machines, the key and the derived config of one run, in a temp dir."""

    def __init__(self, say: Callable[[str], None], server: bool = True):
        self.say = say
        self.server = server
        self.base = Path(tempfile.mkdtemp(prefix="rvup-"))  # short: Ray's socket paths live under it
        self.name = f"reverie-loopback-{os.getpid()}-{self.base.name[-6:]}"
        self.launcher = Machine("launcher", self.base / "l")
        self.head = Machine("head", self.base / "h", HEAD_IP)
        self.worker = Machine("worker", self.base / "w", WORKER_IP)
        self.config_path = self.base / "cluster.yaml"
        self.source = REPO
        self.key = self.launcher.home / ".ssh" / "id_ed25519"
        self.config: dict = {}
        self.up_started = False

    def machines(self) -> list[Machine]:
        return [self.launcher, self.head, self.worker]

    def prepare(self) -> None:
        port = ssh_port()
        for machine in self.machines():
            machine.root.mkdir(mode=0o700)
        key = self.base / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)], check=True)
        public = Path(f"{key}.pub").read_text()
        for machine in self.machines():
            machine.prepare(public, port)
        key.rename(self.key)  # where cluster.yaml's ssh_private_key points, on the launcher
        Path(f"{key}.pub").unlink()

        head_workers = port_range()
        worker_workers = port_range(taken=(head_workers,))
        shipped = yaml.safe_load(SHIPPED.read_text())
        self.config = derive_config(
            shipped,
            name=self.name,
            gcs_port=free_port(),
            head_flags=start_flags(HEAD_IP, True, head_workers),
            worker_flags=start_flags(WORKER_IP, False, worker_workers),
            venv=REPO / ".venv",
            server=self.server,
        )
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.source = checkout_copy(self.base / "src")

        serve_port = free_port()
        for machine in (self.head, self.worker):
            # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0: `ray stop` ends the raylet at once instead of
            # letting it drain for its grace period.
            env = {"RAY_TMPDIR": str(machine.tmp), "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
            if machine is self.head:
                env["REVERIE_PORT"] = str(serve_port)  # the shipped `reverie serve` binds 127.0.0.1:8000
                env["AUTOSCALER_METRIC_PORT"] = str(free_port())  # the head's autoscaler binds 44217
            machine.start_sshd(port, env)
        self.say(f"sshd on {HEAD_IP}:{port} (head) and {WORKER_IP}:{port} (worker); config {self.config_path}")
        for machine in (self.head, self.worker):
            self._check_isolated(machine)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "REVERIE_"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            HOME=str(self.launcher.home),
            RAY_TMPDIR=str(self.launcher.tmp),
            TMPDIR=str(self.launcher.tmp),
        )
        return env

    def _launch(self, argv: list[str], step: str, timeout: float) -> str:
        """Run argv on the launcher machine (from the root of this checkout, as `ray up` needs);
        its output, or RayUpError with the end of it."""
        log = self.base / (re.sub(r"[^\w.-]+", "-", step) + ".log")
        with open(log, "w") as out:
            proc = subprocess.Popen(
                self.launcher.wrap(argv),
                cwd=self.source,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL, grace=0)
                raise RayUpError(f"{step}: no end after {timeout:.0f} s:\n{_tail(log)}") from None
            except BaseException:  # Ctrl-C, SIGTERM: end it, then let the caller tear down
                # `ray` is its namespace's first process and has no SIGTERM handler: only SIGKILL
                # reaches it from here, and takes its ssh connections with it.
                _kill_group(proc, signal.SIGKILL, grace=0)
                raise
        text = log.read_text(errors="replace").replace("\r", "")
        if proc.returncode != 0:
            raise RayUpError(f"{step} exited {proc.returncode}:\n{text[-4000:]}")
        return text

    def _check_isolated(self, machine: Machine) -> None:
        """Refuse to go on unless a login on the machine sees its own PID namespace (then `ray stop`
        there cannot see another Ray) and its own home."""
        out = self._launch(
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-i",
                str(self.key),
                f"root@{machine.ip}",
                "cat /proc/1/comm; readlink /proc/self/ns/pid; echo $HOME",
            ],
            f"ssh-{machine.name}",
            timeout=30,
        )
        lines = out.strip().splitlines()[-3:]
        if lines != ["sshd", lines[1], str(machine.home)] or lines[1] == os.readlink("/proc/self/ns/pid"):
            raise RayUpError(f"{machine.name}: a login there is not in a namespace of its own: {lines}")

    def ray(self, args: list[str], step: str, timeout: float) -> str:
        started = time.monotonic()
        out = self._launch([str(BIN / "ray"), *args], step, timeout)
        self.say(f"{step}: {time.monotonic() - started:.0f} s")
        return out

    def exec(self, command: str, step: str, timeout: float) -> str:
        """A command on the head over ssh, in the login environment the setup commands wrote."""
        return self.ray(["exec", "--no-config-cache", str(self.config_path), command], step, timeout)

    def up(self, timeout: float) -> None:
        self.up_started = True
        self.ray(["up", "-y", "--no-config-cache", "--disable-usage-stats", str(self.config_path)], "ray up", timeout)

    def down(self) -> None:
        if self.up_started:
            try:
                self.ray(["down", "-y", str(self.config_path)], "ray down", timeout=120)
            except (RayUpError, subprocess.SubprocessError) as error:
                self.say(f"ray down failed ({str(error).splitlines()[0]}); stopping the machines anyway")

    def close(self, keep: bool = False) -> None:
        for machine in (self.worker, self.head):
            machine.stop()
        # The ssh connections Ray shares (ControlMaster) live under /tmp/ray_ssh_<user>/<cluster>.
        user = hashlib.sha256(pwd.getpwuid(os.geteuid()).pw_name.encode()).hexdigest()[:10]
        shutil.rmtree(f"/tmp/ray_ssh_{user}/{hashlib.sha256(self.name.encode()).hexdigest()[:10]}", ignore_errors=True)
        if keep:
            self.say(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def _marked(out: str, mark: str) -> Any:
    for line in out.splitlines():
        if line.startswith(mark):
            return json.loads(line[len(mark) :])
    raise RayUpError(f"no {mark.strip()} line in:\n{out[-3000:]}")


def _verdict(out: str) -> dict:
    """The Verdict `reverie ask --json` printed, among ray exec's own lines."""
    decoder = json.JSONDecoder()
    for i, char in enumerate(out):
        if char == "{" and (i == 0 or out[i - 1] == "\n"):
            with contextlib.suppress(ValueError):
                value, _ = decoder.raw_decode(out, i)
                if isinstance(value, dict) and "answer" in value and "nodes" in value:
                    return value
    raise RayUpError(f"no Verdict in the output of reverie ask:\n{out[-3000:]}")


def run(
    question: str = QUESTION,
    rollouts: int = 256,
    per_task: int = 64,
    server: bool = True,
    timeout: float = 600,
    keep: bool = False,
    say: Callable[[str], None] = lambda line: print(f"ray_up: {line}", file=sys.stderr, flush=True),
) -> Result:
    """Bring the shipped cluster.yaml up on 127.0.0.1 (head) and 127.0.0.2 (worker), ingest the
    built-in world on the head, ask `question` there once both nodes are in (rollouts / per_task
    Ray tasks, round robin over the nodes), see the head's `reverie serve` answer /healthz (unless
    `server` is False: then the head starts no server), and take it all down again, whatever
    happens (failure, timeout, Ctrl-C). Each step is bounded; `timeout` bounds the whole run but
    for the teardown."""
    why = missing()
    if why:
        raise RayUpError(why)
    deadline = time.monotonic() + timeout
    seconds: dict[str, float] = {}

    def left(most: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 10:
            raise RayUpError(f"no time left of {timeout:.0f} s")
        return min(most, remaining)

    @contextlib.contextmanager
    def timed(name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            seconds[name] = time.monotonic() - started

    cluster = Cluster(say, server)
    health: int | None = None
    try:
        with timed("total"):
            try:
                with timed("sshd"):
                    cluster.prepare()
                with timed("ray up"):
                    cluster.up(left(300))
                # Meanwhile the head's autoscaler sets the worker up: ssh, rsync, setup, ray start.
                with timed("ingest"):
                    cluster.exec(f"{HERE} reverie --address auto ingest --dataset world --quiet", "ingest", left(300))
                with timed("ask"):
                    wait = left(300)
                    out = cluster.exec(
                        f"{HERE} python -m testkit.ray_up nodes --count 2 --timeout {min(180, wait / 2):.0f}"
                        # Every rollout a Ray task, even when they are few (REVERIE_LOCAL_ROLLOUTS_MAX).
                        f" && REVERIE_LOCAL_ROLLOUTS_MAX=0 REVERIE_ROLLOUTS_PER_TASK={per_task}"
                        f" reverie --address auto ask {shlex.quote(question)}"
                        f" --json --no-llm --seed 0 --rollouts {rollouts}",
                        "both nodes alive, ask",
                        wait,
                    )
                alive = _marked(out, NODES_MARK)
                if len(alive) < 2:
                    raise RayUpError(f"the worker did not join: alive nodes {alive}")
                verdict = _verdict(out)
                if server:
                    with timed("server"):
                        wait = left(240)
                        out = cluster.exec(
                            f"{HERE} python -m testkit.ray_up health --timeout {wait - 30:.0f}", "server /healthz", wait
                        )
                    health = _marked(out, SERVER_MARK)
            finally:
                with timed("down"):
                    try:
                        cluster.down()
                    finally:
                        cluster.close(keep)
    finally:
        say("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return Result(verdict, alive, seconds, cluster.config, health)


def healthz(timeout: float) -> int:
    """On the head: wait until the `reverie serve` the head started answers /healthz on
    $REVERIE_PORT, then print its status after SERVER_MARK."""
    import httpx

    url = f"http://127.0.0.1:{os.environ.get('REVERIE_PORT', '8000')}/healthz"
    deadline = time.monotonic() + timeout
    status = 0
    while status != 200 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.get(url, timeout=10).status_code
        if status != 200:
            time.sleep(2)
    print(SERVER_MARK + json.dumps(status), flush=True)
    return 0


def alive_nodes(count: int, timeout: float) -> int:
    """On the head: wait until `count` nodes are alive, then print them after NODES_MARK."""
    import ray

    ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    deadline = time.monotonic() + timeout
    while True:
        alive = [
            {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "head": "node:__internal_head__" in n["Resources"]}
            for n in ray.nodes()
            if n["Alive"]
        ]
        if len(alive) >= count or time.monotonic() > deadline:
            break
        time.sleep(1)
    print(NODES_MARK + json.dumps(alive), flush=True)
    return 0 if len(alive) >= count else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["health"]:
        p = argparse.ArgumentParser(prog="python -m testkit.ray_up health")
        p.add_argument("--timeout", type=float, default=180)
        return healthz(p.parse_args(argv[1:]).timeout)
    if argv[:1] == ["nodes"]:
        p = argparse.ArgumentParser(prog="python -m testkit.ray_up nodes")
        p.add_argument("--count", type=int, default=2)
        p.add_argument("--timeout", type=float, default=120)
        args = p.parse_args(argv[1:])
        return alive_nodes(args.count, args.timeout)
    p = argparse.ArgumentParser(prog="python -m testkit.ray_up", description=__doc__.split("\n\n")[0])
    p.add_argument("--question", default=QUESTION)
    p.add_argument("--rollouts", type=int, default=256)
    p.add_argument("--per-task", type=int, default=64, help="REVERIE_ROLLOUTS_PER_TASK: rollouts per Ray task")
    p.add_argument("--no-server", action="store_true", help="drop the head's `reverie serve` from the config")
    p.add_argument("--timeout", type=float, default=600, help="seconds for the whole run, the teardown aside")
    p.add_argument("--keep", action="store_true", help="keep the temp dir: derived config, keys, logs")
    p.add_argument("--json", action="store_true", help="print the Verdict as JSON instead of the summary")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # the teardown runs on SIGTERM as on Ctrl-C
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        result = run(args.question, args.rollouts, args.per_task, not args.no_server, args.timeout, args.keep)
    except RayUpError as error:
        print(f"ray_up: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ray_up: interrupted; the cluster is down and the machines stopped", file=sys.stderr)
        return 130
    print(json.dumps(result.verdict, indent=2) if args.json else result.report())
    return 0 if result.server in (None, 200) else 1


if __name__ == "__main__":
    sys.exit(main())
