"""Training control at equal compute: the RLlib agent against static schedules, an LLM and Ray
Tune's ASHA, PBT and PB2, on the headline classifier; and Tune's own PBT toy through the same agent.

    .venv/bin/python -m bench.training_control [--minutes 20] [--seeds 5] [--samples 8] [--toy-minutes 3] [--home DIR]

Every arm runs HeadlineConfig's default run (400 AdamW steps, batch 128, lr 1e-3, weight decay 1e-4)
on the same seeds. The agent trains on healthtweets + MLP runs (seeds 100+) and is measured on
held-out seeds, on the `news` titles and with the CNN. Writes bench/results/training_control.md.

With --home, the embeddings, the trained agent and every arm's scores are kept there, so a second
run redoes only what changed (`--retrain` trains the agent again; the agent's arms follow its weights).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bench.common import RESULTS, fresh_home, write_table
from reverie.atomic import atomic_write

TASKS = (("healthtweets", "mlp"), ("news", "mlp"), ("healthtweets", "cnn"))
TRAIN_SUBSETS = (3000, 10000, 0)  # the agent's training runs: healthtweets subsets of these sizes (0: all), MLP
BASE_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # and schedules starting from these learning rates
ARMS = ("static", "cosine", "linear", "random", "agent", "replay", "llm", "llm-free")
LLM_ARMS = ("llm", "llm-free")  # run last (the slowest); the free-text arm on the first task only


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=12.0, help="agent training time on healthtweets + MLP")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8, help="Tune trials (PBT, PB2: the population)")
    parser.add_argument("--toy-minutes", type=float, default=3.0, help="agent training time on the PBT toy")
    parser.add_argument("--home", default=None, help="a REVERIE_HOME to reuse (embeddings, the agent, arm scores)")
    parser.add_argument("--retrain", action="store_true", help="train the agent again even if --home has one")
    parser.add_argument(
        "--base-lrs",
        type=float,
        nargs="*",
        default=list(BASE_LRS),
        help="starting learning rates the agent's training runs draw from (domain randomisation)",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import torch

    from reverie.agents.lr_control.config import ControlConfig, LRControlTrainConfig
    from reverie.agents.lr_control.evaluate import control_of_agent, run_arm
    from reverie.agents.lr_control.net import load_lr_control, read_lr_control_config
    from reverie.agents.lr_control.train import train_lr_control
    from reverie.agents.lr_control.trainees.headline import HeadlineConfig, load_splits
    from reverie.config import Settings
    from reverie.llm import build_chain
    from reverie.tune.headline import HeadlineSweepConfig, sweep_headline, sweep_summary

    settings = Settings(home=args.home or fresh_home("training-control"))
    for dataset in {d for d, _ in TASKS}:
        load_splits(str(settings.home), dataset)  # the embeddings, once, on every core
    torch.set_num_threads(1)  # then each run on one, as Tune's trials and the agent's env runs are
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    seeds = list(range(args.seeds))

    # the agent

    train = LRControlTrainConfig(
        control=ControlConfig(
            trainee_config=HeadlineConfig(), train_subsets=TRAIN_SUBSETS, base_lrs=tuple(args.base_lrs)
        ),
        iterations=10_000,
        minutes=args.minutes,
    )
    folder = settings.paths.lr_control
    if args.retrain or not (folder / "config.json").is_file():
        folder = train_lr_control(
            settings,
            train,
            lambda i: print(
                f"  agent iter {i['iteration']} {i['elapsed']:.0f}s return {i['episode_return_mean']:.3f}", flush=True
            ),
        )
    saved = read_lr_control_config(folder)
    agent_meta, agent_weights = saved["meta"], saved["weights"]
    agent_seconds = agent_meta["seconds"]
    cache_path = settings.home / "bench_arms.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    agent = load_lr_control(folder)
    chain = build_chain(settings)
    for backend in chain.backends:
        backend.load()

    def save() -> None:
        atomic_write(cache_path, json.dumps(cache, indent=1).encode())

    def arm_key(dataset: str, model: str, arm: str) -> str:
        return f"{dataset}/{model}/{arm}/{len(seeds)}" + (f"/{agent_weights}" if arm in ("agent", "replay") else "")

    # every arm's runs, the LLM's (the slowest) last; cached in --home, so a rerun redoes only what is missing
    def arms_of(task: tuple[str, str]) -> list[str]:
        return [a for a in ARMS if a != "llm-free" or task == TASKS[0]]

    for llm_pass in (False, True):
        for dataset, model in TASKS:
            control = control_of_agent(folder, HeadlineConfig(dataset=dataset, model=model))
            for arm in [a for a in arms_of((dataset, model)) if (a in LLM_ARMS) == llm_pass]:
                key = arm_key(dataset, model, arm)
                if key in cache:
                    continue
                t0 = time.perf_counter()
                result = run_arm(arm, control, seeds, settings.home, agent=agent, chain=chain)
                cache[key] = {
                    "scores": result.scores.tolist(),
                    "note": result.note,
                    "steps": result.grad_steps,
                    "actions": [e.actions for e in result.episodes],
                    "seconds": time.perf_counter() - t0,
                }
                save()
                print(key, np.mean(result.scores), flush=True)

    # Ray Tune on healthtweets + MLP, each trial the same run (lr, weight decay, hidden size and dropout are
    # what they tune); each sweep on every seed (the trials' runs and the search), as the arms are
    for scheduler in ("asha", "pbt", "pb2"):
        for seed in seeds:
            key = f"tune/{scheduler}/{args.samples}/{seed}"
            if key in cache:
                continue
            t0 = time.perf_counter()
            sweep = HeadlineSweepConfig(
                scheduler=scheduler,
                samples=args.samples,
                headline=HeadlineConfig(),
                seed=seed,
                name=f"bench-{scheduler}-{seed}",
            )
            grid = sweep_headline(settings, sweep, verbose=0)
            summary = sweep_summary(grid, sweep)
            trials = [r.metrics["test_acc"] for r in grid if r.metrics and "test_acc" in r.metrics]
            cache[key] = {**summary, "trial_test_mean": float(np.mean(trials)), "seconds": time.perf_counter() - t0}
            save()
            print(key, summary["test_acc"], flush=True)

    rows, details = [], {}
    for dataset, model in TASKS:
        for arm in arms_of((dataset, model)):
            entry = details[f"{dataset}/{model}/{arm}"] = cache[arm_key(dataset, model, arm)]
            scores = np.array(entry["scores"])
            rows.append(
                [
                    f"{dataset} / {model}",
                    arm,
                    f"{scores.mean():.4f} ± {scores.std():.4f}",
                    f"{entry['steps']} per run",
                    entry["note"],
                ]
            )
    for scheduler in ("asha", "pbt", "pb2"):
        sweeps = [cache[f"tune/{scheduler}/{args.samples}/{seed}"] for seed in seeds]
        details[f"tune/{scheduler}"] = sweeps
        best = np.array([s["test_acc"] for s in sweeps])
        steps = np.array([s["grad_steps"] for s in sweeps])
        config = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in sweeps[0]["config"].items()}
        rows.append(
            [
                "healthtweets / mlp",
                f"Tune {scheduler.upper()}",
                f"{best.mean():.4f} ± {best.std():.4f} (best trial by val)",
                f"{steps.mean():.0f} per sweep ({sweeps[0]['trials']} trials)",
                f"all trials' test {np.mean([s['trial_test_mean'] for s in sweeps]):.4f}; seed 0's best {config}",
            ]
        )
    # the goal's second half: the agent at a quarter of a PBT sweep's compute, against PBT's best trial;
    # the static and cosine arms at the same longer budget for reference
    pbt_steps = np.mean([cache[f"tune/pbt/{args.samples}/{seed}"]["grad_steps"] for seed in seeds])
    quarter = int(pbt_steps / 4 // train.control.intervals * train.control.intervals)
    control = control_of_agent(folder, HeadlineConfig(budget=quarter))
    for arm in ("static", "cosine", "agent"):
        key = arm_key("healthtweets", "mlp", arm) + f"/budget{quarter}"
        if key not in cache:
            result = run_arm(arm, control, seeds, settings.home, agent=agent)
            cache[key] = {"scores": result.scores.tolist(), "note": result.note, "steps": result.grad_steps}
            save()
        entry = details[key] = cache[key]
        scores = np.array(entry["scores"])
        rows.append(
            [
                "healthtweets / mlp, ¼ of PBT's compute",
                arm,
                f"{scores.mean():.4f} ± {scores.std():.4f}",
                f"{entry['steps']} per run",
                entry["note"],
            ]
        )

    if "toy" not in cache:
        cache["toy"] = toy(settings, args, seeds)
        save()
    toy_rows = cache["toy"]
    write_table(
        "training_control",
        "Training control: test accuracy at equal compute, the RLlib agent against schedules, an LLM and Ray Tune",
        "cd /work/main && .venv/bin/python -m bench.training_control "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k in ("minutes", "seeds", "samples", "toy_minutes")
        ),
        ["task", "arm", "test accuracy (mean ± std over seeds)", "gradient steps", "notes"],
        rows + toy_rows,
        notes=f"""
Each headline run: {HeadlineConfig().budget} AdamW steps of batch {HeadlineConfig().batch_size} on MiniLM sentence embeddings, every arm
from lr 1e-3 and weight decay 1e-4, seeds {seeds[0]}..{seeds[-1]} (the agent trained on seeds 100+). "static": the best constant
lr of a grid, picked on the validation split; "cosine", "linear": the schedule alone; "agent": the RLlib PPO agent acting
on cosine ({agent_meta["iterations"]} iterations, {agent_meta["env_steps"]} decisions = {agent_meta["env_steps"] // train.control.intervals} training runs of
{HeadlineConfig().budget} steps, {agent_seconds / 60:.1f} min, trained on healthtweets + MLP only, on train sets of
{", ".join(str(n or "all") for n in TRAIN_SUBSETS)} headlines, schedules from {", ".join(f"{x:g}" for x in saved["control"].get("base_lrs") or [1e-3])});
"replay": the agent's actions on one
calibration run, replayed open loop; "llm": the bundled SmolLM2-135M reading the history as text, its decoding constrained to the menu's five
actions; "llm-free": the same unconstrained, its reply parsed strictly;
"random": uniform actions. Tune rows: each sweep run once per seed (the seed fixes its trials' runs and its search); the
best trial by validation accuracy, its test accuracy (mean ± std over the sweeps), and a sweep's gradient steps (every
trial the same {HeadlineConfig().budget}-step run, ASHA stopping some early). Full per-seed scores:
bench/results/training_control.json.
""",
    )
    atomic_write(RESULTS / "training_control.json", json.dumps(details, indent=1).encode())


def toy(settings, args, seeds) -> list[list]:
    """Tune's PBT toy: PBT (population 8, Tune's own example function) against the agent trained on the same dynamics."""
    from ray import tune
    from ray.tune.examples.pbt_function import pbt_function
    from ray.tune.schedulers import PopulationBasedTraining

    from reverie.agents.lr_control.config import ControlConfig, LRControlTrainConfig
    from reverie.agents.lr_control.controllers import CONTROLLERS, run_episode
    from reverie.agents.lr_control.net import load_lr_control
    from reverie.agents.lr_control.train import train_lr_control
    from reverie.agents.lr_control.trainees.pbt_toy import PBTToyConfig, optimal_lr

    budget = 300
    control = ControlConfig(
        trainee="pbt-toy", trainee_config=PBTToyConfig(budget=budget), intervals=20, schedule="constant", base_lr=0.003
    )
    toy_settings = settings.model_copy(update={"home": settings.home / "toy"})
    folder = train_lr_control(
        toy_settings, LRControlTrainConfig(control=control, iterations=10_000, minutes=args.toy_minutes)
    )
    agent = load_lr_control(folder)
    rows = []
    many = list(range(20))
    for name, make, config in [
        ("agent", lambda: CONTROLLERS["agent"](net=agent), control),
        ("constant 0.003", lambda: CONTROLLERS["keep"](), control),
        ("random", lambda: CONTROLLERS["random"](seed=1), control),
    ]:
        scores = np.array([run_episode(config, make(), s, toy_settings.home).test_score for s in many])
        rows.append(
            ["PBT toy", name, f"{scores.mean():.1f} ± {scores.std():.1f} (accuracy, 20 seeds)", f"{budget} per run", ""]
        )
    best = []
    for seed in many:
        from reverie.agents.lr_control.trainees.pbt_toy import PBTToy

        run = PBTToy(PBTToyConfig(budget=budget), seed)
        for _ in range(budget):
            run.advance(1, lambda _: optimal_lr(run.accuracy))
        best.append(run.test_score())
    rows.append(
        [
            "PBT toy",
            "the known optimum (triangle)",
            f"{np.mean(best):.1f} ± {np.std(best):.1f}",
            f"{budget} per run",
            "upper reference",
        ]
    )
    pbt = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=5,
        hyperparam_mutations={"lr": tune.uniform(0.0001, 0.02), "some_other_factor": [1, 2]},
    )
    tuner = tune.Tuner(
        pbt_function,
        param_space={"lr": 0.0001, "some_other_factor": 1, "checkpoint_interval": 5},
        tune_config=tune.TuneConfig(scheduler=pbt, metric="mean_accuracy", mode="max", num_samples=8),
        run_config=tune.RunConfig(
            name="bench-pbt-toy",
            storage_path=str(toy_settings.home / "tune"),
            verbose=0,
            stop={"training_iteration": budget},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    grid = tuner.fit()
    finals = [r.metrics["mean_accuracy"] for r in grid]
    steps = sum(int(r.metrics["training_iteration"]) for r in grid)
    rows.append(
        [
            "PBT toy",
            "Tune PBT (its example, population 8)",
            f"best {max(finals):.1f}, mean {np.mean(finals):.1f}",
            f"{steps} in all",
            f"Tune's own pbt_function, at most {budget} steps a trial; it ends a trial that reports "
            "done (accuracy over 200)",
        ]
    )
    return rows


if __name__ == "__main__":
    main()
