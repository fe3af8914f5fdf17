"""Run every benchmark; each writes its table to bench/results/. The reasoning runs train a policy
per dataset (about 6 minutes each here) and need ../shared/data/kg for Countries."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = [
    ["bench.rollouts"],
    ["bench.ingest"],
    ["bench.scale"],
    ["bench.ask_latency"],
    ["bench.questions"],
    ["bench.serve"],
    ["bench.operation"],
    ["bench.world_model"],
    ["bench.reasoning", "--datasets", "umls", "--minutes", "4", "--reasoner-minutes", "4", "--shaper", "reasoner"],
    [
        "bench.reasoning",
        "--datasets",
        "umls",
        "--minutes",
        "4",
        "--reasoner-minutes",
        "4",
        "--shaper",
        "world-model",
        "--name",
        "reasoning_shaped_by_world_model",
    ],
    [
        "bench.reasoning",
        "--datasets",
        "umls",
        "--experts",
        "4",
        "--reasoner-minutes",
        "0",
        "--name",
        "reasoning_experts",
    ],
    [
        "bench.reasoning",
        "--datasets",
        "umls",
        "--imagined",
        "3",
        "--reasoner-minutes",
        "0",
        "--name",
        "reasoning_imagined",
    ],
    [
        "bench.graph_reasoner",
        "--datasets",
        "countries_s1",
        "countries_s2",
        "countries_s3",
        "umls",
        "kinships",
        "--minutes",
        "4",
    ],
    [
        "bench.graph_reasoner",
        "--datasets",
        "wn18rr",
        "--seeds",
        "0",
        "--minutes",
        "12",
        "--name",
        "graph_reasoner_wn18rr",
    ],
    [
        "bench.reasoning",
        "--datasets",
        "umls",
        "--minutes",
        "8",
        "--reasoner-minutes",
        "4",
        "--shaper",
        "reasoner",
        "--name",
        "reasoning_teacher",
    ],
    [
        "bench.reasoning",
        "--datasets",
        "kinships",
        "--minutes",
        "6",
        "--reasoner-minutes",
        "4",
        "--shaper",
        "reasoner",
        "--name",
        "reasoning_teacher_kinships",
    ],
    [
        "bench.learning",
        "--dataset",
        "kinships",
        "umls",
        "--sessions",
        "5",
        "--ratings-per-session",
        "200",
        "--seeds",
        "0",
        "--updates",
        "20",
        "--pretrain-minutes",
        "1.5",
    ],
    ["bench.images", "--backbones", "lite", "resnet", "clip", "--minutes", "4"],
    ["bench.training_control"],
    ["bench.tune_policy"],
    ["bench.ui_screenshots"],
]


def main() -> None:
    for args in RUNS:
        print(f"== {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
