"""Shared fixtures: one local Ray cluster for the whole session (ray.init costs seconds), one
text encoder for the Ray-free tests, a REVERIE_HOME holding the ingested built-in world, and
Reverie served over HTTP on 127.0.0.1 with an API key (Serve starts once, for every test that
needs the server)."""

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

    ray.init(
        address="local",
        num_cpus=2,
        namespace=NAMESPACE,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def world_settings(tmp_path_factory):
    from reverie.config import Settings

    return Settings(home=tmp_path_factory.mktemp("world-home"))


@pytest.fixture(scope="session")
def world_pipeline(ray_cluster, world_settings):
    """A Pipeline over the built-in world, ingested once for the session."""
    from reverie.data.kg import load_dataset
    from reverie.pipeline import Pipeline

    pipeline = Pipeline(world_settings)
    pipeline.ingest_dataset(load_dataset("world"))
    return pipeline


@pytest.fixture(scope="session")
def served(world_pipeline, world_settings):
    """(base URL, settings) of `reverie serve` over the world home, with the test API key."""
    from ray import serve

    from reverie.serve.app import run
    from testkit.servers import API_KEY, free_port

    settings = world_settings.model_copy(
        update={"port": free_port(), "api_key": API_KEY, "max_body_bytes": 64 * 1024, "max_image_pixels": 1_000_000}
    )
    url = run(settings)
    yield url, settings
    serve.shutdown()


@pytest.fixture(scope="session")
def base_url(served):
    return served[0]


@pytest.fixture(scope="session")
def http(base_url):
    """An HTTP client of the served app that sends the API key."""
    import httpx

    from testkit.servers import AUTH

    with httpx.Client(base_url=base_url, headers=AUTH, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def headline_home(tmp_path_factory):
    """A REVERIE_HOME with the `news` titles embedded (3,764 MiniLM vectors, once per session)."""
    from reverie.agents.lr_control.trainees.headline import load_splits

    home = tmp_path_factory.mktemp("headline-home")
    load_splits(str(home), "news")
    return home
