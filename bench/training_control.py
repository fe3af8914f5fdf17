"""Training control at equal compute: the RLlib agent against static schedules, an LLM and Ray
Tune's ASHA, PBT and PB2, on the headline classifier; and Tune's own PBT toy through the same agent.

    .venv/bin/python -m bench.training_control [--minutes 12] [--seeds 5] [--samples 8] [--toy-minutes 3]

Every arm runs HeadlineConfig's default run (400 AdamW steps, batch 128, lr 1e-3, weight decay 1e-4)
on the same seeds. The agent trains on healthtweets + MLP runs (seeds 100+) and is measured on
held-out seeds, on the `news` titles and with the CNN. Writes bench/results/training_control.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from bench.common import fresh_home, write_table

TASKS = (("healthtweets", "mlp"), ("news", "mlp"), ("healthtweets", "cnn"))
ARMS = ("static", "cosine", "linear", "random", "agent", "replay", "llm")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=12.0, help="agent training time on healthtweets + MLP")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8, help="Tune trials (PBT, PB2: the population)")
    parser.add_argument("--toy-minutes", type=float, default=3.0, help="agent training time on the PBT toy")
    parser.add_argument("--home", default=None, help="a REVERIE_HOME to reuse (embeddings are cached there)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import torch

    from reverie.config import Settings
    from reverie.llm import build_chain
    from reverie.models.headline import HeadlineConfig, load_splits
    from reverie.policies.config import ControlConfig, TunerTrainConfig
    from reverie.policies.tuner_eval import control_of_agent, run_arm
    from reverie.policies.tuner_net import load_tuner, read_tuner_config
    from reverie.policies.tuner_train import train_tuner
    from reverie.tune.headline import HeadlineSweepConfig, sweep_headline, sweep_summary

    torch.set_num_threads(1)
    settings = Settings(home=args.home or fresh_home("training-control"))
    for dataset in {d for d, _ in TASKS}:
        load_splits(str(settings.home), dataset)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    seeds = list(range(args.seeds))

    # the agent
    started = time.perf_counter()
    train = TunerTrainConfig(control=ControlConfig(trainee_config=HeadlineConfig()), iterations=10_000, minutes=args.minutes)
    folder = train_tuner(settings, train, lambda i: print(f"  agent iter {i['iteration']} {i['elapsed']:.0f}s return "
                                                         f"{i['episode_return_mean']:.3f}", flush=True))
    agent_seconds = time.perf_counter() - started
    agent_meta = read_tuner_config(folder)["meta"]
    agent = load_tuner(folder)
    chain = build_chain(settings)
    for backend in chain.backends:
        backend.load()

    rows, details = [], {}
    for dataset, model in TASKS:
        task = HeadlineConfig(dataset=dataset, model=model)
        control = control_of_agent(folder, task)
        for arm in ARMS:
            t0 = time.perf_counter()
            result = run_arm(arm, control, seeds, settings.home, agent=agent, chain=chain)
            scores = result.scores
            rows.append([f"{dataset} / {model}", arm, f"{scores.mean():.4f} ± {scores.std():.4f}",
                         f"{result.grad_steps} per run", result.note])
            details[f"{dataset}/{model}/{arm}"] = {"scores": scores.tolist(), "note": result.note,
                                                  "actions": [e.actions for e in result.episodes],
                                                  "seconds": time.perf_counter() - t0}
            print(rows[-1], flush=True)

    # Ray Tune on healthtweets + MLP, each trial the same run (lr and weight decay are what they tune)
    for scheduler in ("asha", "pbt", "pb2"):
        t0 = time.perf_counter()
        sweep = HeadlineSweepConfig(scheduler=scheduler, samples=args.samples, headline=HeadlineConfig(), seed=0,
                                    name=f"bench-{scheduler}")
        grid = sweep_headline(settings, sweep, verbose=0)
        summary = sweep_summary(grid, sweep)
        trials = [r.metrics["test_acc"] for r in grid if r.metrics and "test_acc" in r.metrics]
        rows.append(["healthtweets / mlp", f"Tune {scheduler.upper()}", f"{summary['test_acc']:.4f} (best trial by val)",
                     f"{summary['grad_steps']} in all ({summary['trials']} trials)",
                     f"best {summary['config']}; finished trials' test {np.mean(trials):.4f} ± {np.std(trials):.4f}"])
        details[f"tune/{scheduler}"] = {**summary, "seconds": time.perf_counter() - t0}
        print(rows[-1], flush=True)

    toy_rows = toy(settings, args, seeds)
    write_table(
        "training_control",
        "Training control: test accuracy at equal compute, the RLlib agent against schedules, an LLM and Ray Tune",
        "cd /work/main && .venv/bin/python -m bench.training_control " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "home"),
        ["task", "arm", "test accuracy (mean ± std over seeds)", "gradient steps", "notes"],
        rows + toy_rows,
        notes=f"""
Each headline run: {HeadlineConfig().budget} AdamW steps of batch {HeadlineConfig().batch_size} on MiniLM sentence embeddings, every arm
from lr 1e-3 and weight decay 1e-4, seeds {seeds[0]}..{seeds[-1]} (the agent trained on seeds 100+). "static": the best constant
lr of a grid, picked on the validation split; "cosine", "linear": the schedule alone; "agent": the RLlib PPO agent acting
on cosine ({agent_meta['iterations']} iterations, {agent_meta['env_steps']} decisions = {agent_meta['env_steps'] // 10} training runs of
{HeadlineConfig().budget} steps, {agent_seconds / 60:.1f} min, trained on healthtweets + MLP only); "replay": the agent's actions on one
calibration run, replayed open loop; "llm": the bundled SmolLM2-135M reading the history as text, strictly parsed;
"random": uniform actions. Tune rows: the best trial by validation accuracy, its test accuracy, and the sweep's total
gradient steps (every trial the same {HeadlineConfig().budget}-step run). Full per-seed scores:
bench/results/training_control.json.
""",
    )
    with open("bench/results/training_control.json", "w") as handle:
        json.dump(details, handle, indent=1)


def toy(settings, args, seeds) -> list[list]:
    """Tune's PBT toy: PBT (population 8, Tune's own example function) against the agent trained on the same dynamics."""
    from ray import tune
    from ray.tune.examples.pbt_function import pbt_function
    from ray.tune.schedulers import PopulationBasedTraining

    from reverie.models.pbt_toy import PBTToyConfig, optimal_lr
    from reverie.policies.config import ControlConfig, TunerTrainConfig
    from reverie.policies.controllers import CONTROLLERS, run_episode
    from reverie.policies.tuner_net import load_tuner
    from reverie.policies.tuner_train import train_tuner

    budget = 300
    control = ControlConfig(trainee="pbt-toy", trainee_config=PBTToyConfig(budget=budget), intervals=20, schedule="constant",
                            base_lr=0.003)
    toy_settings = settings.model_copy(update={"home": settings.home / "toy"})
    folder = train_tuner(toy_settings, TunerTrainConfig(control=control, iterations=10_000, minutes=args.toy_minutes))
    agent = load_tuner(folder)
    rows = []
    many = list(range(20))
    for name, make, config in [
        ("agent", lambda: CONTROLLERS["agent"](net=agent), control),
        ("constant 0.003", lambda: CONTROLLERS["keep"](), control),
        ("random", lambda: CONTROLLERS["random"](seed=1), control),
    ]:
        scores = np.array([run_episode(config, make(), s, toy_settings.home).test_score for s in many])
        rows.append(["PBT toy", name, f"{scores.mean():.1f} ± {scores.std():.1f} (accuracy, 20 seeds)", f"{budget} per run", ""])
    best = []
    for seed in many:
        from reverie.models.pbt_toy import PBTToy

        run = PBTToy(PBTToyConfig(budget=budget), seed)
        for _ in range(budget):
            run.advance(1, lambda _: optimal_lr(run.accuracy))
        best.append(run.test_score())
    rows.append(["PBT toy", "the known optimum (triangle)", f"{np.mean(best):.1f} ± {np.std(best):.1f}", f"{budget} per run", "upper reference"])
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=5,
                                  hyperparam_mutations={"lr": tune.uniform(0.0001, 0.02), "some_other_factor": [1, 2]})
    tuner = tune.Tuner(pbt_function, param_space={"lr": 0.0001, "some_other_factor": 1, "checkpoint_interval": 5},
                       tune_config=tune.TuneConfig(scheduler=pbt, metric="mean_accuracy", mode="max", num_samples=8),
                       run_config=tune.RunConfig(name="bench-pbt-toy", storage_path=str(toy_settings.home / "tune"), verbose=0,
                                                 stop={"training_iteration": budget},
                                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
    grid = tuner.fit()
    finals = [r.metrics["mean_accuracy"] for r in grid]
    rows.append(["PBT toy", "Tune PBT (its example, population 8)", f"best {max(finals):.1f}, mean {np.mean(finals):.1f}",
                 f"{8 * budget} in all", "Tune's pbt_function; stops a trial at accuracy 200"])
    return rows


if __name__ == "__main__":
    main()
