"""One settings tree: REVERIE_* environment variables, an optional YAML file, then defaults.

The YAML file is `$REVERIE_CONFIG` when set, else `$REVERIE_HOME/config.yaml` when it exists.
Environment variables win over the file.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from reverie.home import Home


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "reverie"


def _yaml_file() -> Path | None:
    explicit = os.environ.get("REVERIE_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"REVERIE_CONFIG points to {path}, which is not a file")
        return path
    candidate = Home(Path(os.environ.get("REVERIE_HOME") or _default_home()).expanduser()).config_file
    return candidate if candidate.is_file() else None


class Settings(BaseSettings):
    """Every knob of Reverie. Each field is also the env var REVERIE_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="REVERIE_", extra="forbid", validate_default=True)

    home: Path = Field(
        default_factory=_default_home,
        description="Directory holding all state: graph, vectors, model caches, checkpoints.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; when unset the embedded store under `home` is used."
    )
    qdrant_api_key: str | None = Field(default=None, description="API key for the Qdrant server, if it needs one.")
    vector_index: Literal["edge", "embedded"] = Field(
        default="edge",
        description="The vector index under `home` when `qdrant_url` is unset: 'edge' (Qdrant Edge, the Qdrant engine in process, with HNSW and a write-ahead log) or 'embedded' (qdrant-client's local mode, exact search, points kept in SQLite: slow to write and to load past about 20,000 entities; bench/results/scale.md).",
    )
    address: str | None = Field(
        default=None, description="Ray cluster address to connect to; unset starts a local single-node Ray."
    )

    # linking and retrieval
    link_top_k: int = Field(default=5, ge=1, le=100, description="Entities the vector search returns per question.")
    link_min_score: float = Field(
        default=0.45, ge=-1.0, le=1.0, description="Cosine similarity below which a vector hit is not a link."
    )
    max_subgraph_nodes: int = Field(default=20000, ge=10, description="Cap on the nodes of a retrieved subgraph.")

    # dreams
    walker: Literal["auto", "embedding", "path-policy"] = Field(
        default="auto",
        description="Which walker dreams: 'auto' takes the trained path policy whose graph holds the question's entities, else the embedding walker; 'path-policy' makes a question no policy knows an error.",
    )
    rollouts: int = Field(default=64, ge=1, le=4096, description="Dream rollouts per question.")
    hops: int = Field(default=3, ge=1, le=6, description="Maximum hops per rollout.")
    rollouts_per_task: int = Field(
        default=256,
        ge=1,
        description="Rollouts batched into one Ray remote task; a batch walks in about a millisecond, so small batches are all Ray overhead (bench/results/rollouts.md).",
    )
    local_rollouts_max: int = Field(
        default=512,
        ge=0,
        description="A question with at most this many rollouts dreams and is ranked in the process that answers it, rather than as Ray tasks and an arbiter call: below it a task's round trip costs more than the walks (bench/results/rollouts.md measures the crossover). 0 sends every question's rollouts out as tasks.",
    )
    walker_temperature: float = Field(
        default=0.1, gt=0.0, description="Softmax temperature of the embedding-guided walker over cosine scores."
    )
    stop_bias: float = Field(
        default=-0.1, description="Score of the stop action relative to edge scores (cosine units)."
    )
    walker_inverse_bias: float = Field(
        default=-0.3, description="Score added to hops against a fact's stored direction (cosine units)."
    )
    conversation_memory: Literal["learned", "rule", "none"] = Field(
        default="learned",
        description="How a session's follow-ups are resolved: 'learned' (the GRU memory: the subject, and whether the "
        "last relation carries over), 'rule' (a follow-up that names nothing exactly continues from the last subject), "
        "'none' (each question alone).",
    )
    router: Literal["spiking", "mlp"] = Field(
        default="spiking",
        description="Which network routes each message (graph question, follow-up, image question or small talk): "
        "the spiking hub, or the MLP of the same size ('mlp' turns the hub off).",
    )
    confidence_threshold: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="A Verdict whose calibrated confidence is below this is not sure (`sure: false`): it gives no "
        "answer, says the graph does not say, and offers the nearest chains as alternatives.",
    )
    calibration_questions: int = Field(
        default=240,
        ge=0,
        le=10000,
        description="Questions made from the graph after an ingest that grows it by 5% since the last fit, to calibrate the embedding "
        "walker's confidence on (0: keep the built-in calibrator).",
    )
    alternatives: int = Field(default=3, ge=0, le=20, description="Runner-up answers reported with their chains.")
    tree_walks: int = Field(
        default=48,
        ge=1,
        le=1024,
        description="The most distinct walks a rollout tree (Query.tree) shows, most frequent first.",
    )

    # LLM
    llm_backends: list[Literal["local", "ollama", "student"]] = Field(
        default=["local"], description="Fallback chain, tried in order."
    )
    ollama_host: str = Field(default="http://127.0.0.1:11434", description="Ollama server for the 'ollama' backend.")
    ollama_model: str = Field(default="llama3.2", description="Model name on the Ollama server.")
    ollama_api_key: str | None = Field(
        default=None,
        description="Bearer key sent to the Ollama server, for one behind a key (such as another Reverie).",
    )
    ollama_timeout_s: float = Field(default=30.0, gt=0, description="Seconds before an Ollama call counts as failed.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    top_k: int = Field(default=40, ge=1, description="Top-k sampling when temperature > 0.")
    max_new_tokens: int = Field(default=48, ge=1, le=1024, description="Tokens the LLM may generate per answer.")

    # images
    clip_weights: Path | None = Field(
        default=None,
        description="An image-tower checkpoint (what `reverie train clip` writes), or with `clip_arch` an open_clip checkpoint; unset uses the tower trained under `home`.",
    )
    clip_arch: str | None = Field(
        default=None,
        description="The open_clip architecture of an open_clip checkpoint in `clip_weights` (e.g. ViT-B-32, or a model-config JSON file); its image vectors reach MiniLM's space by a map fit on text.",
    )
    image_candidates: int = Field(
        default=3,
        ge=1,
        le=20,
        description="The image's nearest entities that seed the rollouts, each weighted by its calibrated link probability.",
    )
    image_candidate_min_probability: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="A runner-up image candidate below this link probability seeds no rollouts.",
    )
    image_link_min_score: float = Field(
        default=0.1,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity below which a question's image links to nothing (an error, rather than a guess).",
    )
    max_image_pixels: int = Field(
        default=40_000_000,
        ge=1024,
        description="Largest image (width x height) accepted; a larger one is refused (HTTP 413).",
    )

    model_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Torch threads of the encoder and LLM actors; Ray would give these zero-CPU actors one.",
    )

    # learning from use
    learn: bool = Field(
        default=False,
        description="Run the online learner beside the service (`reverie serve --learn`): each trained policy takes in new ratings and new facts and publishes a new version, which answers pick up without a restart.",
    )
    learn_interval_s: float = Field(
        default=60.0, gt=0, description="Seconds between the learner's looks at the feedback dataset and new facts."
    )
    learn_minutes: float = Field(
        default=2.0, gt=0, description="The most time one learner update takes beside the service."
    )

    # serving
    host: str = Field(default="127.0.0.1", description="Interface the HTTP server binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP server.")
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="On SIGTERM or Ctrl-C, how long `reverie serve` lets requests in flight finish before it stops.",
    )
    api_key: str | None = Field(
        default=None,
        description="When set, every HTTP request needs `Authorization: Bearer <key>`; without it the answer is 401.",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Largest HTTP request body; a larger one gets 413."
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Host names the server answers to besides loopback names and addresses and the address it binds (a request with another Host header gets 403, against DNS rebinding); `*.example.com` admits its subdomains, `*` any name. A JSON list or comma-separated.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Browser origins (scheme://host[:port]) allowed to call the API from a web page, besides the page's own and those `cors_origin_regex` matches; any other Origin gets 403. A JSON list or comma-separated.",
    )
    cors_origin_regex: str | None = Field(
        default=r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?",
        description="Browser origins allowed to call the API, as a regular expression the whole origin must match (default: localhost on any port); unset allows only `cors_origins` and the page's own origin.",
    )

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """A JSON list, or (as an environment variable is easier to write) names separated by commas."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("home")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _yaml_file()
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)

    @property
    def paths(self) -> Home:
        """Every folder and file under `home` (reverie/home.py)."""
        return Home(self.home)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def offline_hub() -> None:
    """No network at run time: every model comes from an installed package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
