"""The training-control agent's network as plain torch (no Ray): observation -> action logits and
a value. The RLlib RLModule in module.py wraps it for PPO; a checkpoint loads and acts with torch alone.

A checkpoint is a folder: config.json (the net's sizes, the ControlConfig it was trained with, the
training figures) and the weights it names, written weights first, config last, each atomically.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reverie.atomic import atomic_write

CONFIG_FILE = "config.json"
FORMAT = "reverie-tuner/1"


class TunerNet(nn.Module):
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


def save_tuner(net: TunerNet, folder: str | Path, control: Any, meta: dict[str, Any]) -> Path:
    """Save the net with the ControlConfig it acts under (`control`) and training figures (`meta`)."""
    folder = Path(folder)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buffer)
    data = buffer.getvalue()
    weights = f"tuner-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    atomic_write(folder / weights, data)
    control_json = {k: v for k, v in dataclasses.asdict(control).items() if k != "trainee_config"}
    control_json["seeds"] = [min(control.seeds), max(control.seeds)]
    config = {"format": FORMAT, "net": net.config, "weights": weights, "control": control_json, "meta": meta}
    atomic_write(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True).encode())
    for stale in folder.glob("tuner-*.pt"):
        if stale.name != weights:
            stale.unlink(missing_ok=True)
    return folder


def read_tuner_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no tuner checkpoint ({CONFIG_FILE} missing)")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    return config


def load_tuner(folder: str | Path) -> TunerNet:
    """The agent saved in `folder`, in eval mode, without Ray."""
    config = read_tuner_config(folder)
    net = TunerNet(**config["net"])
    net.load_state_dict(torch.load(Path(folder) / config["weights"], map_location="cpu", weights_only=True))
    return net.eval()
