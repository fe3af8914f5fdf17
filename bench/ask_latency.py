"""Latency of `reverie ask` on the built-in world, split by stage.

Warm: a Pipeline whose actors are up answers every world question with the local LLM; each stage's
time is read from the Verdict. Cold: `reverie ask` as a user runs it, in a new process that starts
Ray, loads the encoder and the LLM, then answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import ray

from bench.common import fresh_home, write_table
from reverie.actors import NAMESPACE
from reverie.config import Settings
from reverie.data import load_dataset
from reverie.data.world import SAMPLE_QUESTION, world_questions
from reverie.pipeline import Pipeline
from reverie.schemas import Query

STAGES = ["encode", "link", "retrieve", "dream", "arbitrate", "verbalize", "remember"]


def main() -> None:
    home = fresh_home("ask")
    settings = Settings(home=home)
    ray.init(
        address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    pipeline = Pipeline(settings)
    pipeline.ingest_dataset(load_dataset("world"))
    pipeline.answer(Query(question=SAMPLE_QUESTION))  # loads the LLM
    rows = []
    for verbalize in (True, False):
        timings = {s: [] for s in STAGES + ["total"]}
        right = 0
        for i, wq in enumerate(world_questions()):
            start = time.perf_counter()
            verdict = pipeline.answer(Query(question=wq.question, seed=i, verbalize=verbalize))
            timings["total"].append((time.perf_counter() - start) * 1000)
            for stage in STAGES:
                timings[stage].append(verdict.timings_ms[stage])
            right += verdict.answer_entity == wq.answer
        label = "with LLM" if verbalize else "without LLM (template)"
        for stage, values in timings.items():
            rows.append(
                [
                    label,
                    stage,
                    f"{np.percentile(values, 50):.1f}",
                    f"{np.percentile(values, 90):.1f}",
                    f"{np.max(values):.1f}",
                ]
            )
        rows.append([label, "answers right", f"{right}/{len(world_questions())}", "", ""])
    for handle in vars(pipeline.services).values():
        ray.kill(handle)
    ray.shutdown()

    env = {**os.environ, "REVERIE_HOME": str(home)}
    cold = []
    for flags in ([], ["--no-llm"]):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "reverie.cli", "ask", SAMPLE_QUESTION, *flags],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        cold.append(f"`reverie ask {' '.join(flags)}` cold: {time.perf_counter() - start:.1f} s")
    write_table(
        "ask_latency",
        "Latency of `reverie ask` on the built-in world, by stage (ms)",
        "python -m bench.ask_latency",
        ["mode", "stage", "p50", "p90", "max"],
        rows,
        notes=f"""
Warm pipeline, {len(world_questions())} world questions each, {settings.rollouts} rollouts of up to {settings.hops} hops,
{settings.rollouts_per_task} rollouts per Ray task. "total" is the wall time of `Pipeline.answer` as the caller sees it.
Whole-process runs (start Ray, load the encoder and the LLM, answer, exit):
- {cold[0]}
- {cold[1]}
""",
    )


if __name__ == "__main__":
    main()
