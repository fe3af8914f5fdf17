"""Ray hosting only: thin actors around the computing parts, and the rollout remote task.

Actors are named per REVERIE_HOME (so a Serve replica and a CLI driver on the same cluster
share one store) and take no CPU reservation: they mostly wait, and the rollout tasks need the
cores. The graph store is a single actor because the embedded Qdrant store takes a file lock.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import ray

from reverie.config import Settings, offline_hub
from reverie.encoders import TextEncoder
from reverie.dreams import Arbiter, EmbeddingWalker, Rollouts, start_nodes
from reverie.dreams.policy_walker import PolicyRollouts, policy_rollouts, rank_policy_rollouts
from reverie.graph_store import GraphStore
from reverie.graph_store.subgraph import Subgraph
from reverie.feedback import FeedbackLog
from reverie.memory import SessionMemory
from reverie.policies.bundle import PolicyBundle

NAMESPACE = "reverie"


# The computing classes hosted as they are: every public method becomes a remote method.
TextEncoderActor = ray.remote(num_cpus=0)(TextEncoder)
# The store restarts from its snapshot when its process dies; a call in flight is retried on the
# new process, which is safe because apply() skips what is already stored.
GraphStoreActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(GraphStore)
MemoryActor = ray.remote(num_cpus=0)(SessionMemory)
FeedbackActor = ray.remote(num_cpus=0, max_restarts=-1)(FeedbackLog)


@ray.remote(num_cpus=0)
class ArbiterActor:
    def __init__(self):
        self.arbiter = Arbiter()

    def rank(self, sub: Subgraph, question_vec: np.ndarray, limit: int, *parts: Rollouts):
        """Rollout batches come as separate arguments so Ray resolves each from the object store."""
        return self.arbiter.rank(sub, Rollouts.concat(parts), question_vec, limit)

    def rank_policy(self, bundle: PolicyBundle, source: str, limit: int, *parts: PolicyRollouts):
        """The trained policy's rollouts, ranked as `reverie eval` ranks (world model x path evidence)."""
        return rank_policy_rollouts(bundle, PolicyRollouts.concat(parts), source, limit)


@ray.remote(num_cpus=0)
class LLMActor:
    def __init__(self, settings: Settings):
        offline_hub()
        from reverie.llm import build_chain

        self.settings = settings
        self.chain = build_chain(settings)

    def warm_up(self) -> None:
        """Load the local model now (the first load converts the GGUF, ~20 s) rather than on a question."""
        for backend in self.chain.backends:
            if hasattr(backend, "load"):
                backend.load()

    def verbalize(self, question: str, chain, seed: int | None = None) -> tuple[str, str]:
        from reverie.llm import verbalize

        return verbalize(question, chain, self.chain, self.settings, seed=seed)


# Rollout tasks spread over the cluster's nodes and return (rollouts, node id): the rollouts stay
# in the object store for the arbiter, while the driver fetches only where each batch ran.
@ray.remote(num_cpus=1, num_returns=2, scheduling_strategy="SPREAD")
def policy_rollout_task(bundle: PolicyBundle, sources: np.ndarray, relation: int, seed: int) -> tuple[PolicyRollouts, str]:
    """A batch of the trained policy's rollouts; the bundle (net, graph) comes from the object store."""
    import torch

    torch.set_num_threads(1)
    return policy_rollouts(bundle, sources, relation, seed), ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1, num_returns=2, scheduling_strategy="SPREAD")
def rollout_task(sub: Subgraph, question_vec: np.ndarray, count: int, hops: int, walker: EmbeddingWalker, seed: int) -> tuple[Rollouts, str]:
    """A batch of rollouts; the subgraph arrives from the object store, shared by every task."""
    rng = np.random.default_rng(seed)
    return walker.walk(sub, question_vec, start_nodes(sub, count, rng), hops, rng), ray.get_runtime_context().get_node_id()


def _actor(cls, name: str, *args, threads: int | None = None):
    options = {"name": name, "namespace": NAMESPACE, "get_if_exists": True}
    if threads:
        # Ray sets OMP_NUM_THREADS=1 in a worker that reserves no CPU; torch reads it at import.
        options["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}}
    return cls.options(**options).remote(*args)


@dataclass
class Services:
    """Handles to the actors one REVERIE_HOME uses."""

    encoder: "ray.actor.ActorHandle"
    store: "ray.actor.ActorHandle"
    arbiter: "ray.actor.ActorHandle"
    llm: "ray.actor.ActorHandle"
    memory: "ray.actor.ActorHandle"
    feedback: "ray.actor.ActorHandle"

    @classmethod
    def start(cls, settings: Settings, encoder=None, llm=None) -> "Services":
        """The named actors of settings.home; Serve passes its own deployments' handles for the
        encoder and the LLM, which it scales (the Pipeline calls both kinds of handle alike)."""
        tag = hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]
        return cls(
            encoder=encoder or _actor(TextEncoderActor, f"text-encoder-{settings.model_threads}", threads=settings.model_threads),
            store=_actor(GraphStoreActor, f"graph-store-{tag}", settings),
            arbiter=_actor(ArbiterActor, "arbiter"),
            llm=llm or _actor(LLMActor, f"llm-{tag}", settings, threads=settings.model_threads),
            memory=_actor(MemoryActor, f"memory-{tag}"),
            feedback=_actor(FeedbackActor, f"feedback-{tag}", settings.feedback_dir),
        )

    def warm_up(self, llm: bool = True) -> None:
        """Start every actor and load its models, so stage timings measure work, not start-up."""
        refs = [self.encoder.encode.remote(["warm up"]), self.store.open_index.remote(), self.memory.recall.remote("")]
        if llm:
            refs.append(self.llm.warm_up.remote())
        ray.get(refs)

    def stop(self) -> None:
        for handle in (self.encoder, self.store, self.arbiter, self.llm, self.memory, self.feedback):
            ray.kill(handle)


def init_ray(settings: Settings) -> None:
    """Connect to `settings.address`, or start a local single-node Ray."""
    if ray.is_initialized():
        return
    ray.init(
        # "local": without an address, Ray would join the last cluster `ray start` left on this machine
        address=settings.address or "local",
        namespace=NAMESPACE,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
