"""The one checkpoint layout of Reverie's trained networks: a folder holding `config.json` and the
weights it names (a plain torch state dict in a content-named file). The weights are written first,
then config.json replaces the old one atomically, then weight files no longer named are removed, so
a reader always finds a complete, matching pair. Loading needs torch only, never Ray.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from reverie.atomic import atomic_write

CONFIG_FILE = "config.json"


def save_checkpoint(
    folder: str | Path, state_dict: dict[str, Any], config: dict[str, Any], format: str, prefix: str
) -> Path:
    """Write `state_dict` as `<prefix>-<hash>.pt` and `config` (plus "format" and "weights") as config.json."""
    import torch

    folder = Path(folder)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    data = buffer.getvalue()
    weights = f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.pt"
    atomic_write(folder / weights, data)
    atomic_write(
        folder / CONFIG_FILE,
        json.dumps({**config, "format": format, "weights": weights}, indent=2, sort_keys=True).encode(),
    )
    for stale in folder.glob(f"{prefix}-*.pt"):
        if stale.name != weights:
            stale.unlink(missing_ok=True)
    return folder


def read_checkpoint(path: str | Path, format: str) -> dict[str, Any]:
    """The config.json of a checkpoint folder (or the file itself); errors name what is wrong."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not config_path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint ({CONFIG_FILE} missing)")
    config = json.loads(config_path.read_text())
    if config.get("format") != format:
        raise ValueError(f"{config_path}: not a {format} checkpoint")
    return config


def load_weights(path: str | Path, config: dict[str, Any]) -> dict[str, Any]:
    """The state dict a checkpoint's config names."""
    import torch

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return torch.load(folder / config["weights"], map_location="cpu", weights_only=True)
