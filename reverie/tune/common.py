"""What every sweep shares: where results go, the table of best trials, and the compute spent."""

from __future__ import annotations

import math
from typing import Any


def trial_dirname(trial) -> str:
    """A trial's folder: its id (Tune's default spells out the whole config, nested settings too)."""
    return f"trial-{trial.trial_id}"


def reports_run(result_grid) -> int:
    """How many intervals every trial reported, summed: the sweep's compute in report units
    (a PBT trial that exploits another's checkpoint keeps counting what it itself ran)."""
    total = 0
    for result in result_grid:
        frame = result.metrics_dataframe
        total += 0 if frame is None else len(frame)
    return total


def best_table(result_grid, metric: str, columns: list[str], top: int = 5) -> str:
    """The best trials by `metric` (their best reported value) as a plain-text table."""
    rows = []
    for result in result_grid:
        frame = result.metrics_dataframe
        if frame is None or metric not in frame:
            continue
        best = frame[metric].max()
        rows.append((best, {c: result.config.get(c) for c in columns}, len(frame)))
    rows.sort(key=lambda r: -r[0] if not math.isnan(r[0]) else math.inf)
    header = [metric, *columns, "reports"]
    lines = ["  ".join(f"{h:>12}" for h in header)]
    for best, config, reports in rows[:top]:
        cells = [f"{best:.4f}"] + [_cell(config[c]) for c in columns] + [str(reports)]
        lines.append("  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
