"""The training-control agent's network as plain torch (no Ray): observation -> action logits and
a value. The RLlib RLModule in module.py wraps it for PPO; a checkpoint loads and acts with torch alone.

A checkpoint (reverie/checkpoints.py's layout) holds the net's sizes, the ControlConfig it was
trained with and the training figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reverie.checkpoints import load_weights, read_checkpoint, save_checkpoint

FORMAT = "reverie-tuner/1"


class LRControlNet(nn.Module):
    def __init__(self, observation_size: int, actions: int, hidden: int = 64):
        super().__init__()
        self.config = {"observation_size": int(observation_size), "actions": int(actions), "hidden": int(hidden)}
        self.body = nn.Sequential(nn.Linear(observation_size, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.pi = nn.Linear(hidden, actions)
        self.value = nn.Linear(hidden, 1)
        nn.init.zeros_(self.pi.weight)  # start uniform over the menu
        nn.init.zeros_(self.pi.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(obs.float())
        return self.pi(h), self.value(h).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> int:
        """The most probable action for one observation."""
        logits, _ = self(torch.as_tensor(np.asarray(obs, np.float32)).unsqueeze(0))
        return int(logits.argmax(-1))


def save_lr_control(net: LRControlNet, folder: str | Path, control: Any, meta: dict[str, Any]) -> Path:
    """Save the net with the ControlConfig it acts under (`control`) and training figures (`meta`)."""
    control_json = {k: v for k, v in dataclasses.asdict(control).items() if k != "trainee_config"}
    control_json["seeds"] = [min(control.seeds), max(control.seeds)]
    return save_checkpoint(
        folder, net.state_dict(), {"net": net.config, "control": control_json, "meta": meta}, FORMAT, "tuner"
    )


def read_lr_control_config(folder: str | Path) -> dict[str, Any]:
    return read_checkpoint(folder, FORMAT)


def load_lr_control(folder: str | Path) -> LRControlNet:
    """The agent saved in `folder`, in eval mode, without Ray."""
    config = read_lr_control_config(folder)
    net = LRControlNet(**config["net"])
    net.load_state_dict(load_weights(folder, config))
    return net.eval()
