"""The `ray up` configs (cluster.yaml, cluster.aws.yaml), `ray up cluster.yaml` for real over SSH on
this machine, and `serve deploy` on a `ray start` head.

The `ray up` test runs testkit/ray_up.py (`make cluster`): the head and the worker are sshds on
127.0.0.1 and 127.0.0.2, each the first process of PID and mount namespaces of its own, so the
`ray stop` in the shipped commands and in `ray down` reaches only that node's Ray, and stopping the
sshd ends all of it. The serve deploy test starts its head with `ray start --block` in a process
group of its own and ends exactly that group (never `ray stop`, which would end every Ray on the
machine). Nothing in this file calls ray.init in the pytest process: other tests' session cluster
may live here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the virtualenv's bin: ray, reverie
CONFIGS = ["cluster.yaml", "cluster.aws.yaml"]
QUESTION = "What happens when you drop a glass cup?"
ROLLOUTS, PER_TASK = 256, 64  # 4 Ray tasks, round robin over the nodes


def _config(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


# ---- the configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_against_rays_schema(name):
    """What `ray up` does before it touches a node: fill in the provider's defaults, then check
    Ray's JSON schema and its own rules (no network, no ssh)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _config(name)
    prepared = prepare_config(config)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    if config["provider"]["type"] == "local":
        assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    else:
        assert config["provider"]["type"] == "aws" and config["provider"]["region"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_installs_reverie_and_starts_the_server(name):
    config = _config(name)
    assert config["file_mounts"] == {"~/reverie": "."}
    assert "cd ~/reverie && make install" in config["setup_commands"]
    head, workers = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    ray_head = [i for i, c in enumerate(head) if "ray start --head --port=6379" in c]
    serve = [i for i, c in enumerate(head) if re.search(r"nohup \S*reverie --address auto serve .*&", c)]
    assert len(ray_head) == 1 and len(serve) == 1 and ray_head[0] < serve[0], head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head[ray_head[0]]
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in workers)
    for command in config["setup_commands"] + head + workers:
        check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert check.returncode == 0, (command, check.stderr)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_sets_one_auth_mode_everywhere(name):
    """A node or driver without the head's RAY_AUTH_MODE (and token) cannot join, so every command
    that starts Ray or Reverie, and the login environment, must say the same mode."""
    config = _config(name)
    starters = [
        c
        for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
        if re.search(r"ray start|reverie .*serve", c)
    ]
    env_file = [c for c in config["setup_commands"] if "> ~/.reverie_env" in c]
    modes = [re.findall(r"\bRAY_AUTH_MODE=(\w+)", c) for c in starters + env_file]
    assert all(len(m) == 1 for m in modes) and len({m[0] for m in modes}) == 1, modes
    if modes[0][0] == "token":  # then each of them needs the token as well
        assert all("RAY_AUTH_TOKEN=" in c for c in starters + env_file)
    else:
        assert modes[0][0] == "disabled"


def test_login_environment_puts_reverie_on_the_path(tmp_path):
    """Run the setup commands that write ~/.reverie_env (all but the installs) in a scratch HOME,
    twice, then read the environment a `ray` command or a `ray attach` shell gets."""
    commands = [c for c in _config("cluster.yaml")["setup_commands"] if "make install" not in c]
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    for command in commands + commands:
        subprocess.run(["bash", "-c", command], env=env, check=True)
    assert (tmp_path / ".bashrc").read_text().count("source ~/.reverie_env") == 1
    out = subprocess.run(
        ["bash", "-c", "source ~/.bashrc; echo $RAY_AUTH_MODE; echo $PATH"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    mode, path = out.stdout.splitlines()
    assert mode == "disabled" and path.split(":")[0] == f"{tmp_path}/reverie/.venv/bin"


def test_aws_config_runs_the_same_commands_as_the_local_one():
    local, aws = _config("cluster.yaml"), _config("cluster.aws.yaml")
    # But for the autoscaler: the local provider's head needs v1 (v2 never starts its workers,
    # ray-project/ray#57153); AWS works with either.
    v1 = " RAY_enable_autoscaler_v2=0"
    assert [c.replace(v1, "") for c in aws["head_start_ray_commands"]] == [
        c.replace(v1, "") for c in local["head_start_ray_commands"]
    ]
    assert aws["worker_start_ray_commands"] == local["worker_start_ray_commands"]
    assert aws["setup_commands"][-len(local["setup_commands"]) :] == local["setup_commands"]
    for key in ("rsync_exclude", "rsync_filter", "file_mounts"):
        assert aws[key] == local[key]


# ---- `ray up` for real, over SSH, on this machine ---------------------------------------------------


def test_loopback_config_changes_only_what_the_machines_need():
    """The config `make cluster` and the test below bring up: the shipped one with the loopback
    addresses, root, a link to this checkout's .venv instead of `make install`, and free ports,
    each node's address and one CPU in `ray start`. Every other command runs as shipped (the
    `ray stop`s included: each machine has a PID namespace of its own). Ray's schema takes it."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    from testkit import ray_up

    shipped = _config("cluster.yaml")
    flags = {ip: ray_up.start_flags(ip, ip == ray_up.HEAD_IP, range(23000, 23100)) for ip in ("127.0.0.1", "127.0.0.2")}
    args = dict(name="rv-test", gcs_port=24567, head_flags=flags["127.0.0.1"], worker_flags=flags["127.0.0.2"])
    config = ray_up.derive_config(shipped, venv=REPO / ".venv", **args)
    validate_config(prepare_config(config))
    assert config["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": ["127.0.0.2"]}
    assert config["auth"] == {"ssh_user": "root", "ssh_private_key": shipped["auth"]["ssh_private_key"]}
    kept = (
        "cluster_name",
        "provider",
        "auth",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    assert {k: v for k, v in config.items() if k not in kept} == {k: v for k, v in shipped.items() if k not in kept}
    assert config["setup_commands"][1:] == shipped["setup_commands"][1:]
    assert config["setup_commands"][0] == f"ln -sfn {REPO / '.venv'} ~/reverie/.venv"
    head, worker = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    assert [c for c in head if "ray start" not in c] == [
        c for c in shipped["head_start_ray_commands"] if "ray start" not in c
    ]
    assert "ray stop" in head and "ray stop" in worker
    start = next(c for c in head if "ray start" in c)
    assert "--port=24567 --node-ip-address=127.0.0.1 --num-cpus=1" in start and "--include-dashboard=false" in start
    assert "RAY_enable_autoscaler_v2=0" in start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
    assert any("ray start --address=$RAY_HEAD_IP:24567 --node-ip-address=127.0.0.2" in c for c in worker)
    without_server = ray_up.derive_config(shipped, venv=REPO / ".venv", server=False, **args)
    assert without_server["head_start_ray_commands"] == [c for c in head if ray_up.SERVE not in c]


def test_missing_sshd_says_what_to_install(monkeypatch):
    monkeypatch.setattr(
        shutil, "which", lambda name, path=None: None if name in ("sshd", "rsync") else f"/usr/bin/{name}"
    )
    from testkit import ray_up

    why = ray_up.missing()
    assert why == "sshd, rsync not found: apt-get install openssh-server rsync (`make sshd` does)"


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)  # about 100 s; minutes when the machine is busy
def test_ray_up_over_ssh_spreads_rollouts_over_both_nodes():
    """`ray up` of the shipped cluster.yaml for real (testkit/ray_up.py, what `make cluster` runs):
    sshd on 127.0.0.1 (the head) and 127.0.0.2 (the worker), each the first process of namespaces of
    its own, a key made for the run; `ray up -y`; the head's autoscaler sets the worker up over ssh;
    `ray exec` ingests the built-in world and asks, every rollout a Ray task, round robin over the
    nodes; `ray down -y`, and the machines stopped, whatever happened."""
    from testkit import ray_up

    result = ray_up.run(rollouts=ROLLOUTS, per_task=PER_TASK, server=False, timeout=600)
    alive = {n["node_id"]: n for n in result.alive}
    assert len(alive) == 2 and sorted(n["head"] for n in alive.values()) == [False, True], result.alive
    assert [n["ip"] for n in alive.values() if not n["head"]] == ["127.0.0.2"], result.alive
    assert sorted(result.nodes) == sorted(alive), f"rollouts per node {result.nodes}, alive nodes {result.alive}"
    assert all(n > 0 for n in result.nodes.values()) and sum(result.nodes.values()) == ROLLOUTS, result.nodes
    assert result.verdict["rollouts"] == ROLLOUTS and result.verdict["answer_entity"] == "shatters", result.verdict


# ---- Ray processes the serve deploy test starts ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without Ray or Reverie settings (so no RAY_ADDRESS), token auth off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "REVERIE_"))}
    env.update(RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _tree(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of root and every process below it. Ray's workers leave the process group
    of the `ray start` that made them, so ending the group alone could miss them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, i = [root], 0
    while i < len(pids):
        pids += children.get(pids[i], [])
        i += 1
    return [(pid, fields[19]) for pid in pids if (fields := _stat(pid))]


def _running(pid: int, start: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


def _stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group `proc` leads (it was started with start_new_session), wait for it and
    every process below it, then SIGKILL what is left: only processes this test started."""
    tree = _tree(proc.pid)[1:]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc.poll() is None or any(_running(*p) for p in tree)):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, start in tree:
        if _running(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _run(args: list[str], env: dict[str, str], timeout: float = 480) -> subprocess.CompletedProcess:
    """Run a command in a session of its own; whatever happens, it and its children are ended."""
    proc = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _stop(proc)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _check(args: list[str], env: dict[str, str]) -> str:
    done = _run(args, env)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_serve_deploy_runs_the_shipped_config(tmp_path):
    """`serve deploy reverie/serve/config.yaml` on a `ray start` head (with its dashboard, which
    serve deploy talks to): the app comes up, ingests over HTTP and answers with the chain."""
    import httpx

    import reverie.serve

    temp_dir = tempfile.mkdtemp(prefix="rv-deploy-")
    port, dashboard, http_port = _free_port(), _free_port(), _free_port()
    config = yaml.safe_load((Path(reverie.serve.__file__).parent / "config.yaml").read_text())
    config["http_options"]["port"] = http_port
    config["applications"][0]["args"] = {"home": str(tmp_path / "home"), "api_key": "deploy-key"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=2",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
    ]
    log = Path(temp_dir) / "ray-start.log"
    with open(log, "w") as out:
        head = subprocess.Popen(
            args,
            env=_env(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:  # serve deploy needs the dashboard's REST API
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{dashboard}/api/version", timeout=5).status_code == 200:
                    break
            time.sleep(2)
        _check(
            [str(BIN / "serve"), "deploy", str(tmp_path / "config.yaml"), "-a", f"http://127.0.0.1:{dashboard}"], _env()
        )
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": "Bearer deploy-key"}, timeout=120
        )
        deadline = time.monotonic() + 420
        while True:
            assert time.monotonic() < deadline, "the deployed app never answered /healthz"
            with contextlib.suppress(httpx.HTTPError):
                if http.get("/healthz").status_code == 200:
                    break
            time.sleep(3)
        assert httpx.get(f"http://127.0.0.1:{http_port}/healthz").status_code == 401  # the key in args is on
        facts = [
            ("glass cup", "made of", "glass"),
            ("glass", "is", "brittle"),
            ("brittle", "when dropped on a hard floor", "shatters"),
        ]
        report = http.post("/v1/ingest", json={"triples": [{"head": h, "relation": r, "tail": t} for h, r, t in facts]})
        assert report.status_code == 200 and report.json()["triples_added"] == 3, report.text
        verdict = http.post("/v1/query", json={"question": QUESTION, "seed": 0, "verbalize": False}).json()
        assert verdict["answer_entity"] == "shatters"
        assert [s["result"] for s in verdict["chain"]["steps"]] == ["glass", "brittle", "shatters"]
    finally:
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
