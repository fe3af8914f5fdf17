"""The loop both RL agents train with: RLlib PPO's iterations, timed and reported. Imports Ray."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


def ppo_iterations(
    algo: Any,
    iterations: int,
    max_seconds: float | None,
    label: str,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Call algo.train() `iterations` times, or until `max_seconds` of it pass; one report per call.

    progress(info) is called after every iteration with keys: iteration, iterations, env_steps,
    env_steps_per_s (sampled env steps / wall time of that train() call, sampling + learning),
    episode_return_mean, seconds (that train() call), sample_seconds and learn_seconds (RLlib's
    smoothed timers), sample_steps_per_s (env steps / sample_seconds), elapsed.
    """
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        ENV_RUNNER_SAMPLING_TIMER,
        EPISODE_RETURN_MEAN,
        LEARNER_UPDATE_TIMER,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
        TIMERS,
    )

    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    steps_before = 0
    for it in range(1, iterations + 1):
        t0 = time.perf_counter()
        result = algo.train()
        seconds = time.perf_counter() - t0
        runner = result.get(ENV_RUNNER_RESULTS, {})
        steps = int(runner.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, steps_before))
        ret = runner.get(EPISODE_RETURN_MEAN)
        timers = result.get(TIMERS, {})
        sample_s = float(timers.get(ENV_RUNNER_SAMPLING_TIMER, float("nan")))
        info = {
            "iteration": it,
            "iterations": iterations,
            "env_steps": steps,
            "env_steps_per_s": (steps - steps_before) / seconds if seconds > 0 else 0.0,
            "episode_return_mean": float(ret) if ret is not None else float("nan"),
            "seconds": seconds,
            "sample_seconds": sample_s,
            "learn_seconds": float(timers.get(LEARNER_UPDATE_TIMER, float("nan"))),
            "sample_steps_per_s": (steps - steps_before) / sample_s if sample_s > 0 else float("nan"),
            "elapsed": time.perf_counter() - started,
        }
        steps_before = steps
        history.append(info)
        log.info(
            "%s iteration %d/%d: %.0f env steps/s, return %.3f",
            label,
            it,
            iterations,
            info["env_steps_per_s"],
            info["episode_return_mean"],
        )
        if progress is not None:
            progress(info)
        if max_seconds is not None and info["elapsed"] >= max_seconds:
            break
    return history
