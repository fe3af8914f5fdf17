"""Datasets, in one room. No Ray.

- kg.py: knowledge-graph datasets by name (the built-in world; UMLS, Kinships, Nations from the pykeen
  wheel; folders in the train/dev/test[/graph] layout such as Countries and WN18RR) and the readers of
  TSV, CSV and JSONL triples.
- synthetic.py: seeded synthetic graphs of any size with heavy-tailed degrees and typed relations,
  named `synthetic-<triples>[-<entities>]`, for measuring cost against graph size (bench/scale.py).
- world.py: the built-in commonsense world (objects, materials, properties and what they do).
- render/: the world's objects drawn as pictures (PIL), for the image tower's training and tests.
- headlines.py: the headline corpora (labelled short texts from installed packages), their fixed
  splits and cached sentence embeddings, which the headline classifier trains on.
"""

from reverie.data import kg
from reverie.data.kg import KGDataset, read_file


def load_dataset(name_or_path: str) -> KGDataset:
    """A dataset by name (kg.load_dataset's names, or `synthetic-<triples>[-<entities>]`) or a folder path."""
    from reverie.data.synthetic import parse_name, synthetic_kg  # here: `python -m reverie.data.synthetic` runs it

    synthetic = parse_name(name_or_path)
    if synthetic is not None:
        return synthetic_kg(*synthetic)
    return kg.load_dataset(name_or_path)


def dataset_names() -> list[str]:
    return [*kg.dataset_names(), "synthetic-<triples>[-<entities>]"]


__all__ = ["KGDataset", "dataset_names", "load_dataset", "read_file"]
