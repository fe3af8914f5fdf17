"""The Graph RAG fabric: typed graph (networkx), vector index (Qdrant), retrieval, datasets, persistence. No Ray."""
from reverie.graph_store.datasets import KGDataset, dataset_names, load_dataset, read_file
from reverie.graph_store.store import GraphStore, IngestPlan
from reverie.graph_store.subgraph import Subgraph

__all__ = ["GraphStore", "IngestPlan", "KGDataset", "Subgraph", "dataset_names", "load_dataset", "read_file"]
