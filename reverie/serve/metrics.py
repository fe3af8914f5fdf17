"""GET /metrics: every alive node's Ray metrics export (Ray's own metrics and Reverie's, which
Ray exports as ray_reverie_*), merged into one Prometheus text page."""

from __future__ import annotations

import asyncio

import httpx

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def merge_exposition(pages: list[str]) -> str:
    """One page from several: each metric family's HELP and TYPE once, then all its samples.

    Ray's pages group each family's samples under its `# HELP` / `# TYPE` lines, and the samples
    of different nodes differ by their NodeAddress label, so families merge by name."""
    families: dict[str, list[str]] = {}
    for page in pages:
        current = None
        for line in page.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                name = line.split(" ", 3)[2]
                seen = families.setdefault(name, [])
                current = name
                if line not in seen:
                    seen.append(line)
            elif line and not line.startswith("#") and current is not None:
                families[current].append(line)
    return "\n".join(line for lines in families.values() for line in lines) + "\n"


def metrics_endpoints() -> list[str]:
    import ray

    return [
        f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
        for node in ray.nodes()
        if node.get("Alive") and node.get("MetricsExportPort")
    ]


async def cluster_metrics(timeout_s: float = 5.0) -> str:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        replies = await asyncio.gather(*(client.get(url) for url in metrics_endpoints()), return_exceptions=True)
    pages = [r.text for r in replies if isinstance(r, httpx.Response) and r.status_code == 200]
    return merge_exposition(pages)
