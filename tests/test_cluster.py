"""The `ray up` configs (cluster.yaml, cluster.aws.yaml) and a real two-node Ray cluster on this machine.

The two-node test starts a head and a second node with `ray start --block` in their own process
groups and ends exactly those groups (never `ray stop`, which would end every Ray on the machine).
Nothing in this file calls ray.init in the pytest process: other tests' session cluster may live here.
"""

from __future__ import annotations

import contextlib
import json
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
ROLLOUTS, PER_TASK = 1024, 64


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
    assert aws["head_start_ray_commands"] == local["head_start_ray_commands"]
    assert aws["worker_start_ray_commands"] == local["worker_start_ray_commands"]
    assert aws["setup_commands"][-len(local["setup_commands"]) :] == local["setup_commands"]
    for key in ("rsync_exclude", "rsync_filter", "file_mounts"):
        assert aws[key] == local[key]


# ---- a two-node cluster on this machine -----------------------------------------------------------


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


ALIVE = "import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"


def _alive(address: str) -> list[str]:
    probe = _run([sys.executable, "-c", ALIVE, address], _env(), timeout=120)
    lines = probe.stdout.strip().splitlines()
    return json.loads(lines[-1]) if probe.returncode == 0 and lines else []


@pytest.fixture
def two_nodes():
    """A head and a second node on this machine, one CPU each; yields (address, alive node ids)."""
    temp_dir = tempfile.mkdtemp(prefix="rv-cluster-")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray's own ports that have fixed defaults get free ones, so other clusters here do not collide.
    common = [
        "--block",
        "--num-cpus=1",
        "--node-ip-address=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    head = ["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={_free_port()}"]
    env = _env(RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")  # SIGTERM ends a node now, not after 30 s
    nodes: list[subprocess.Popen] = []
    logs = [Path(temp_dir) / f"ray-start-{i}.log" for i in range(2)]
    try:
        for log, extra in zip(logs, (head, [f"--address={address}"])):
            args = [str(BIN / "ray"), "start", *common, *extra, f"--dashboard-agent-listen-port={_free_port()}"]
            with open(log, "w") as out:
                nodes.append(
                    subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
        deadline, alive = time.monotonic() + 180, []
        while len(alive) < 2:
            assert time.monotonic() < deadline, f"nodes alive after 180 s: {alive}"
            assert all(n.poll() is None for n in nodes), "ray start exited:\n" + "\n".join(
                log.read_text()[-2000:] for log in logs
            )
            alive = _alive(address)
        yield address, alive
    finally:
        for node in reversed(nodes):
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _ask(env: dict[str, str], *address: str) -> dict:
    """Ingest the built-in world into env's REVERIE_HOME, then ask; the Verdict as a dict."""
    reverie = str(BIN / "reverie")
    _check([reverie, *address, "ingest", "--dataset", "world", "--quiet"], env)
    return json.loads(
        _check(
            [reverie, *address, "ask", QUESTION, "--json", "--no-llm", "--seed", "0", "--rollouts", str(ROLLOUTS)], env
        )
    )


def _reasoning(verdict: dict) -> dict:
    """What must not depend on where the rollouts ran."""
    return {
        "answer_entity": verdict["answer_entity"],
        "steps": [(s["what"], s["action"], s["result"], s["edge_id"]) for s in verdict["chain"]["steps"]],
        "candidates": [(c["answer"], c["votes"]) for c in verdict["candidates"]],
        "rollouts": verdict["rollouts"],
    }


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1500)  # four CLI runs and two Ray starts; minutes when the machine is busy
def test_two_node_cluster_spreads_rollouts_and_keeps_the_answer(two_nodes, tmp_path):
    address, alive = two_nodes
    per_task = {"REVERIE_ROLLOUTS_PER_TASK": str(PER_TASK)}  # 1024 rollouts = 16 tasks
    on_cluster = _ask(_env(REVERIE_HOME=str(tmp_path / "cluster-home"), **per_task), "--address", address)
    nodes = on_cluster["nodes"]
    assert set(nodes) <= set(alive) and sum(nodes.values()) == ROLLOUTS, (nodes, alive)
    # SPREAD alone does not promise this: the driver reuses its first worker lease, so 16 short tasks
    # can all run on the node whose worker was ready first. Round-robin node affinity does.
    assert sorted(nodes) == sorted(alive), f"rollouts per node {nodes}, alive nodes {alive}"
    assert all(n > 0 for n in nodes.values()), nodes

    # The same question on a single-node Ray of its own: no --address, and _env drops RAY_ADDRESS.
    alone = _ask(_env(REVERIE_HOME=str(tmp_path / "local-home"), **per_task))
    assert len(alone["nodes"]) == 1 and sum(alone["nodes"].values()) == ROLLOUTS, alone["nodes"]
    assert not set(alone["nodes"]) & set(alive), "the single-node run joined the test cluster"
    assert _reasoning(on_cluster) == _reasoning(alone)


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
