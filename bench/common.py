"""Shared bits of the benchmarks: machine description, table writing, a fresh REVERIE_HOME."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_KG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kg"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def fresh_home(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"reverie-bench-{prefix}-"))


def write_table(name: str, title: str, command: str, header: list[str], rows: list[list], notes: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}  ",
        f"Commit: {commit or 'unknown'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes.strip()]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path


MINERVA_GIT = Path(os.environ.get("MINERVA_GIT", "/work/.mirror/shehzaadzd+MINERVA/repo"))
"""A git directory of github.com/shehzaadzd/MINERVA: the one public home of Countries S3 (MINERVA's split)."""


def minerva_countries_s3() -> Path:
    """Countries S3 read from the MINERVA repository's git objects into a temporary folder (never into the project)."""
    folder = Path(tempfile.mkdtemp(prefix="countries_s3-")) / "countries_s3"
    folder.mkdir()
    for name in ("graph", "train", "dev", "test"):
        text = subprocess.run(
            ["git", f"--git-dir={MINERVA_GIT}", "show", f"HEAD:datasets/data_preprocessed/countries_S3/{name}.txt"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (folder / f"{name}.txt").write_text(text)
    return folder
