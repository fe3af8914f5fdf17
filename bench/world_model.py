"""World model quality: PyKEEN ComplEx (LCWA, inverse triples, N3, xavier init) trained on each
dataset's walkable graph, scored on the test split with filtered TAIL ranks (ties = mean rank).

    .venv/bin/python -m bench.world_model [--datasets umls kinships nations] [--epochs 200] [--dim 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from bench.common import write_table
from reverie.data.kg import load_dataset
from reverie.models.world_model import WORLD_MODELS, WorldModel, WorldModelConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["umls", "kinships", "nations"])
    parser.add_argument("--model", default="complex", choices=list(WORLD_MODELS))
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--save", default=None, help="folder to save each model to, as <dataset>.pt")
    parser.add_argument("--name", default="world_model", help="results file name under bench/results/")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for name in args.datasets:
        ds = load_dataset(name)
        start = time.perf_counter()
        wm = WorldModel.train(ds, WorldModelConfig(model=args.model, dim=args.dim, epochs=args.epochs, seed=args.seed))
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        m = wm.evaluate(ds, split="test")
        eval_s = time.perf_counter() - start
        if args.save:
            wm.save(f"{args.save.rstrip('/')}/{name}.pt")
        rows.append(
            [
                name,
                wm.num_entities,
                wm.num_relations,
                len(ds.graph),
                len(ds.test),
                f"{m['hits@1']:.3f}",
                f"{m['hits@3']:.3f}",
                f"{m['hits@10']:.3f}",
                f"{m['mrr']:.3f}",
                f"{train_s:.1f}",
                f"{eval_s:.2f}",
            ]
        )
        print(name, rows[-1], flush=True)

    hp = dataclasses.asdict(WorldModelConfig(model=args.model))
    notes = (
        f"Model: {args.model}, dim {args.dim}, {args.epochs} epochs, seed {args.seed}, PyKEEN LCWA training loop, "
        f"create_inverse_triples=True, loss {hp['loss']}, optimizer {hp['optimizer']} (lr {hp['lr']}), "
        f"batch {hp['batch_size']}"
        + (", N3 weight 0.01, xavier-normal init" if args.model == "complex" else "")
        + f"; torch threads {torch.get_num_threads()}.\n"
        "Trained on the walkable graph only (`dataset.graph`, = train for these datasets). Test metrics are "
        "filtered tail prediction: each test triple (h, r, t) ranks t among all entities for (h, r), with every "
        "other known true tail from graph + train + dev + test removed; ties count as the mean rank. "
        'Scores use `score_mode="forward"` (the default). Train time is wall-clock on a shared machine.'
    )
    write_table(
        args.name,
        "World model (PyKEEN KGE): filtered tail ranking on the test split",
        "cd /work/main && .venv/bin/python -m bench.world_model"
        + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        [
            "dataset",
            "entities",
            "relations",
            "graph triples",
            "test triples",
            "H@1",
            "H@3",
            "H@10",
            "MRR",
            "train s",
            "eval s",
        ],
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
