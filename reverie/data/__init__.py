"""Datasets, in one room. No Ray.

- kg.py: knowledge-graph datasets by name (the built-in world; UMLS, Kinships, Nations from the pykeen
  wheel; folders in the train/dev/test[/graph] layout such as Countries and WN18RR) and the readers of
  TSV, CSV and JSONL triples.
- world.py: the built-in commonsense world (objects, materials, properties and what they do).
- render/: the world's objects drawn as pictures (PIL), for the image tower's training and tests.
- headlines.py: the headline corpora (labelled short texts from installed packages), their fixed
  splits and cached sentence embeddings, which the headline classifier trains on.
"""

from reverie.data.kg import KGDataset, dataset_names, load_dataset, read_file

__all__ = ["KGDataset", "dataset_names", "load_dataset", "read_file"]
