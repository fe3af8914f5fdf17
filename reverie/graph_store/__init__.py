"""The Graph RAG fabric: typed graph (networkx), vector index (Qdrant), retrieval, persistence. No Ray."""

from reverie.graph_store.store import GraphStore, IngestPlan
from reverie.graph_store.subgraph import Subgraph

__all__ = ["GraphStore", "IngestPlan", "Subgraph"]
