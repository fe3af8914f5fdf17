"""RLlib PPO's settings, which both RL agents are trained with (the loop that runs PPO's iterations
is in agents/training.py: it imports Ray, this module does not)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
            "lr": self.lr,
            "gamma": self.gamma,
            "lambda_": self.lambda_,
            "entropy_coeff": self.entropy_coeff,
            "vf_loss_coeff": self.vf_loss_coeff,
            "clip_param": self.clip_param,
            "vf_clip_param": self.vf_clip_param,
            "kl_coeff": self.kl_coeff,
            "num_epochs": self.num_epochs,
            "train_batch_size_per_learner": train_batch,
            "minibatch_size": min(self.minibatch_size, train_batch),
        }
