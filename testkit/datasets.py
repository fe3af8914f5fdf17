"""Small datasets the tests and benchmarks build on the fly."""

from __future__ import annotations

import numpy as np


def write_toy_dataset(folder) -> None:
    """A small family graph: parent edges, grandparent = parent . parent, and random 'likes' edges.

    Every query has a learnable 2-hop answer path (the direct edge is masked by the env):
    grandparent -> parent, parent; likes -> another likes edge then stay; parent -> grandparent, parent^-1.
    """
    rng = np.random.default_rng(0)
    n = 40
    parent = {i: int(rng.integers(0, i)) for i in range(1, n)}
    triples = [(f"p{c}", "parent", f"p{p}") for c, p in parent.items()]
    triples += [(f"p{c}", "grandparent", f"p{parent[p]}") for c, p in parent.items() if p in parent]
    for i in range(n):
        for j in rng.choice([k for k in range(n) if k != i], size=2, replace=False):
            triples.append((f"p{i}", "likes", f"p{j}"))
    folder.mkdir(parents=True)
    lines = ["\t".join(t) for t in triples]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "dev.txt").write_text("\n".join(lines[:5]) + "\n")
    (folder / "test.txt").write_text("\n".join(lines[5:10]) + "\n")
