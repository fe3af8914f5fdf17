"""DESIGN.md's rule, checked: the parts that compute import no Ray. Every module of the computing
packages is imported in a fresh interpreter, which must end with no `ray` module loaded."""
from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import reverie

COMPUTING = ["graph_store", "encoders", "llm", "dreams", "models", "data", "agents.path_policy", "agents.lr_control", "agents.lr_control.trainees"]
TOP_LEVEL = ["atomic", "batching", "checkpoints", "config", "edges", "errors", "feedback", "memory", "ranking", "runs", "schemas", "torchvision_fix"]
HOSTING = {"reverie.agents.path_policy.train", "reverie.agents.path_policy.module", "reverie.agents.lr_control.train", "reverie.agents.lr_control.module"}  # the RLlib trainer and its RLModule wrapper


def modules(package: str) -> list[str]:
    path = [f"{reverie.__path__[0]}/{package.replace('.', '/')}"]
    names = [f"reverie.{package}"] + [f"reverie.{package}.{m.name}" for m in pkgutil.iter_modules(path)]
    return [name for name in names if name not in HOSTING]


@pytest.mark.parametrize("package", COMPUTING + ["top-level"])
def test_computing_modules_import_no_ray(package):
    names = [f"reverie.{m}" for m in TOP_LEVEL] if package == "top-level" else modules(package)
    code = f"import importlib, sys\nfor name in {names!r}:\n    importlib.import_module(name)\nprint(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{package} pulls in Ray: {out.stdout.strip()[:300]}"


def test_the_hosting_modules_are_the_ones_that_use_ray():
    """The exceptions above are real modules, so the list cannot hide a typo."""
    agents = f"{reverie.__path__[0]}/agents"
    assert HOSTING <= {f"reverie.agents.{room}.{m.name}" for room in ("path_policy", "lr_control") for m in pkgutil.iter_modules([f"{agents}/{room}"])}
