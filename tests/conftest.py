"""Shared fixtures: one local Ray cluster for the whole session (ray.init costs seconds), one
text encoder for the Ray-free tests, and a REVERIE_HOME holding the ingested built-in world."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def encoder():
    from reverie.encoders import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from reverie.actors import NAMESPACE

    ray.init(address="local", num_cpus=2, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def world_settings(tmp_path_factory):
    from reverie.config import Settings

    return Settings(home=tmp_path_factory.mktemp("world-home"))


@pytest.fixture(scope="session")
def world_pipeline(ray_cluster, world_settings):
    """A Pipeline over the built-in world, ingested once for the session."""
    from reverie.graph_store.datasets import load_dataset
    from reverie.pipeline import Pipeline

    pipeline = Pipeline(world_settings)
    pipeline.ingest_dataset(load_dataset("world"))
    return pipeline
