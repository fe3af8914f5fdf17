"""Run every benchmark of the foundation; each writes its table to bench/results/."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for module in ("bench.rollouts", "bench.ingest", "bench.ask_latency"):
    print(f"== {module}", flush=True)
    subprocess.run([sys.executable, "-m", module], cwd=ROOT, check=True)
