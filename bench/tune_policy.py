"""The path policy's PPO settings swept with Ray Tune ASHA, against the current defaults.

    .venv/bin/python -m bench.tune_policy [--dataset umls] [--samples 8] [--iterations 60] [--report-every 10]

Each trial trains a policy with PPO (learning rate, entropy bonus, hops and test beam drawn from the
search space; the first trial is the defaults) and reports its dev MRR every `report-every`
iterations; ASHA stops the weak ones. The best trial (by dev MRR) and the defaults' trial are then
ranked on the test split. Writes bench/results/tune_policy.md.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import fresh_home, write_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--report-every", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from reverie.config import Settings
    from reverie.tune.common import best_table
    from reverie.tune.policy import PolicySweepConfig, compare_with_defaults, sweep_policy

    settings = Settings(home=fresh_home("tune-policy"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    sweep = PolicySweepConfig(
        dataset=args.dataset, samples=args.samples, iterations=args.iterations, report_every=args.report_every
    )
    started = time.perf_counter()
    grid = sweep_policy(settings, sweep, verbose=0)
    seconds = time.perf_counter() - started
    table = best_table(grid, sweep.metric, ["lr", "entropy_coeff", "hops", "beam"], top=args.samples)
    print(table)
    compared = compare_with_defaults(grid, sweep)
    rows = []
    for label in ("defaults", "best"):
        part = compared[label]
        c = part["config"]
        rows.append(
            [
                label,
                f"{c['lr']:.2e}",
                f"{c['entropy_coeff']:.3f}",
                c["hops"],
                c["beam"],
                f"{part['dev']:.3f}",
                f"{part['test_policy_mrr']:.3f}",
                f"{part['test_mrr']:.3f}",
            ]
        )
    iterations = sum(len(r.metrics_dataframe) for r in grid if r.metrics_dataframe is not None) * args.report_every
    write_table(
        "tune_policy",
        f"Path-policy PPO settings swept with Ray Tune ASHA on {args.dataset}: the best trial against the defaults",
        f"cd /work/main && .venv/bin/python -m bench.tune_policy --dataset {args.dataset} --samples {args.samples} "
        f"--iterations {args.iterations} --report-every {args.report_every}",
        [
            "trial",
            "PPO lr",
            "entropy",
            "hops",
            "test beam",
            "dev MRR (paths alone, ASHA's metric)",
            "test MRR, paths alone",
            "test MRR, Reverie (arbiter, weight 1)",
        ],
        rows,
        notes=f"""
{args.samples} trials of up to {args.iterations} PPO iterations (256 walks), dev MRR every {args.report_every}; ASHA (reduction
factor 2) stopped the weak ones: {iterations} PPO iterations in all, {seconds / 60:.1f} min on 2 cores. The arbiter column
ranks by the world model times the paths with weight 1 (training tunes that weight on dev; the sweep does not).
The world model (ComplEx, dim 200, 200 epochs) is trained once and shared. Every trial, best first:

```
{table}
```
""",
    )


if __name__ == "__main__":
    main()
