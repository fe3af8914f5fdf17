"""What both RL agents share: RLlib PPO's settings and the loop that runs its iterations."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PPOSettings:
    """RLlib PPO for these short walks whose reward comes at the last step."""

    lr: float = 1e-3
    """Adam learning rate."""
    gamma: float = 1.0
    """No discount: a fixed horizon with the reward at the end."""
    lambda_: float = 0.95
    """GAE lambda."""
    entropy_coeff: float = 0.05
    """Entropy bonus (MINERVA's beta)."""
    vf_loss_coeff: float = 0.5
    """Weight of the value loss."""
    clip_param: float = 0.2
    """PPO's policy-ratio clip."""
    vf_clip_param: float = 1.0
    """Value clip; returns lie in [0, 1 + shaping]."""
    kl_coeff: float = 0.0
    """No KL penalty: the clip alone bounds the update."""
    num_epochs: int = 4
    """SGD passes over each train batch."""
    batches_per_iteration: int = 8
    """The train batch is walks x hops x this many env steps."""
    minibatch_size: int = 1024
    """SGD minibatch (capped at the train batch)."""

    def rllib_training(self, walks: int, hops: int) -> dict[str, Any]:
        """Keyword arguments of PPOConfig.training() for `walks` walks of `hops` steps."""
        train_batch = walks * hops * self.batches_per_iteration
        return {
            "lr": self.lr, "gamma": self.gamma, "lambda_": self.lambda_, "entropy_coeff": self.entropy_coeff,
            "vf_loss_coeff": self.vf_loss_coeff, "clip_param": self.clip_param, "vf_clip_param": self.vf_clip_param,
            "kl_coeff": self.kl_coeff, "num_epochs": self.num_epochs, "train_batch_size_per_learner": train_batch,
            "minibatch_size": min(self.minibatch_size, train_batch),
        }



def ppo_iterations(algo: Any, iterations: int, max_seconds: float | None, label: str,
                   progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
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
        log.info("%s iteration %d/%d: %.0f env steps/s, return %.3f", label, it, iterations,
                 info["env_steps_per_s"], info["episode_return_mean"])
        if progress is not None:
            progress(info)
        if max_seconds is not None and info["elapsed"] >= max_seconds:
            break
    return history
