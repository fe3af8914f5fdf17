"""Ray hosting only: thin actors around the computing parts, and the rollout remote task.

Actors are named per REVERIE_HOME (so a Serve replica and a CLI driver on the same cluster
share one store) and take no CPU reservation: they mostly wait, and the rollout tasks need the
cores. The graph store is a single actor because the embedded Qdrant store takes a file lock.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from reverie.config import Settings
from reverie.dreams import Rollouts, Walker, WalkQuery, arbitrate, dream
from reverie.encoders import TextEncoder
from reverie.encoders.image import ImageEncoder, tower_path
from reverie.feedback import FeedbackLog
from reverie.graph_store import GraphStore
from reverie.graph_store.subgraph import Subgraph
from reverie.llm.verbalizer import Verbalizer
from reverie.memory import SessionMemory

NAMESPACE = "reverie"
# Torch's OpenMP threads sleep when idle instead of spinning. Reverie's processes share the cores
# (rollouts, replicas, other models): with spinning threads one LLM batch of 8 took 108 s instead of 5.
PASSIVE_THREADS = {"OMP_WAIT_POLICY": "PASSIVE"}

log = logging.getLogger(__name__)


# The computing classes hosted as they are: every public method becomes a remote method.
TextEncoderActor = ray.remote(num_cpus=0)(TextEncoder)
ImageEncoderActor = ray.remote(num_cpus=0)(ImageEncoder)
# The store restarts from its snapshot when its process dies; a call in flight is retried on the
# new process, which is safe because apply() skips what is already stored.
GraphStoreActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=3)(GraphStore)
MemoryActor = ray.remote(num_cpus=0)(SessionMemory)
FeedbackActor = ray.remote(num_cpus=0, max_restarts=-1)(FeedbackLog)


LLMActor = ray.remote(num_cpus=0)(Verbalizer)


@ray.remote(num_cpus=0)
class ArbiterActor:
    """Ranks a question's rollouts off the driver, by the walker that made them."""

    def rank(
        self, walker: Walker, graph: Subgraph | None, query: WalkQuery, limit: int, tree_walks: int, *parts: Rollouts
    ):
        """`arbitrate` over the batches; they come as separate arguments so Ray resolves each from the object store."""
        return arbitrate(walker, graph, query, Rollouts.concat(parts), limit, tree_walks)


def here() -> str:
    """This process's Ray node id, where local rollouts ran."""
    return ray.get_runtime_context().get_node_id()


# Rollout tasks return (rollouts, node id): the rollouts stay in the object store for the arbiter,
# while the driver fetches only where each batch ran. rollout_placements() spreads them.
@ray.remote(num_cpus=1, num_returns=2)
def rollout_task(
    walker: Walker, graph: Subgraph | None, query: WalkQuery, count: int, seed: int
) -> tuple[Rollouts, str]:
    """A batch of rollouts; a walker too large to copy (a trained policy) and the subgraph come
    from the object store, shared by every task."""
    return dream(walker, graph, query, count, seed), here()


_CPU_NODES: tuple[float, list[str]] = (0.0, [])
_NODES_TTL_S = 5.0
_next_node = itertools.count()


def rollout_placements(count: int) -> list:
    """A scheduling strategy for each of `count` rollout tasks: round robin over the nodes that have
    a CPU, soft (a busy or lost node hands its task on). Ray's SPREAD is only best effort: short
    tasks keep landing on whichever node had a warm worker first."""
    global _CPU_NODES
    now = time.monotonic()
    if now - _CPU_NODES[0] > _NODES_TTL_S:
        _CPU_NODES = (now, sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) >= 1))
    nodes = _CPU_NODES[1]
    if len(nodes) < 2:
        return ["DEFAULT"] * count
    first = next(_next_node)
    return [NodeAffinitySchedulingStrategy(nodes[(first + i) % len(nodes)], soft=True) for i in range(count)]


def _actor(cls, name: str, *args, threads: int | None = None, pin: bool = False, shared: bool = False):
    options = {"name": name, "namespace": NAMESPACE, "get_if_exists": True}
    if shared:
        # Shared by every home on the cluster: a handle found by name does not keep a non-detached
        # actor alive, so once the Pipeline that made it is gone the next one would find it dying.
        options["lifetime"] = "detached"
    if pin:
        # State on disk (graph, feedback) lives under REVERIE_HOME of the node that first creates the
        # actor: keep the actor there, rather than wherever a restart would find a free slot.
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        )
    if threads:
        # Ray sets OMP_NUM_THREADS=1 in a worker that reserves no CPU; torch reads it at import.
        options["runtime_env"] = {
            "env_vars": {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **PASSIVE_THREADS}
        }
    return cls.options(**options).remote(*args)


def home_tag(settings: Settings) -> str:
    return hashlib.sha1(str(settings.home).encode()).hexdigest()[:10]


def state_actor(settings: Settings, name: str) -> "ray.actor.ActorHandle":
    """One of the actors that hold REVERIE_HOME's state (`store`, `memory`, `feedback`); the first
    process to ask creates it, and the stateful ones stay on its node."""
    tag = home_tag(settings)
    if name == "store":
        return _actor(GraphStoreActor, f"graph-store-{tag}", settings, pin=True)
    if name == "memory":
        return _actor(MemoryActor, f"memory-{tag}")
    if name == "feedback":
        return _actor(FeedbackActor, f"feedback-{tag}", settings.paths.feedback, pin=True)
    raise ValueError(f"no state actor named {name!r}")


class Services:
    """Handles to the actors one REVERIE_HOME uses, each started on first use: a one-shot `reverie ask
    --no-llm` starts no LLM, no image encoder and (with few rollouts) no arbiter."""

    NAMES = ("encoder", "images", "store", "arbiter", "llm", "memory", "feedback")

    def __init__(self, settings: Settings, **given: "ray.actor.ActorHandle"):
        unknown = set(given) - set(self.NAMES)
        if unknown:
            raise TypeError(f"unknown services: {sorted(unknown)}")
        self.settings = settings
        self._handles = {name: handle for name, handle in given.items() if handle is not None}

    @classmethod
    def start(cls, settings: Settings, encoder=None, llm=None, images=None) -> "Services":
        """The named actors of settings.home; Serve passes its own deployments' handles for the
        encoders and the LLM, which it scales (the Pipeline calls both kinds of handle alike)."""
        return cls(settings, encoder=encoder, llm=llm, images=images)

    def _make(self, name: str) -> "ray.actor.ActorHandle":
        settings = self.settings
        if name == "encoder":
            return _actor(
                TextEncoderActor, f"text-encoder-{settings.model_threads}", threads=settings.model_threads, shared=True
            )
        if name == "images":
            weights = tower_path(settings)
            tag = hashlib.sha1(f"{weights}|{settings.clip_arch}".encode()).hexdigest()[:10]
            return _actor(
                ImageEncoderActor,
                f"image-encoder-{tag}",
                weights,
                settings.max_image_pixels,
                settings.model_threads,
                settings.clip_arch,
                shared=True,
            )
        if name == "arbiter":
            return _actor(ArbiterActor, "arbiter", shared=True)
        if name == "llm":
            return _actor(LLMActor, f"llm-{home_tag(settings)}", settings, threads=settings.model_threads)
        return state_actor(settings, name)

    def _get(self, name: str) -> "ray.actor.ActorHandle":
        if name not in self._handles:
            self._handles[name] = self._make(name)
        return self._handles[name]

    encoder = property(lambda self: self._get("encoder"))
    images = property(lambda self: self._get("images"))
    store = property(lambda self: self._get("store"))
    arbiter = property(lambda self: self._get("arbiter"))
    llm = property(lambda self: self._get("llm"))
    memory = property(lambda self: self._get("memory"))
    feedback = property(lambda self: self._get("feedback"))

    def warm_up(self, llm: bool = True) -> None:
        """Start every actor and load its models, so stage timings measure work, not start-up."""
        refs = [self.encoder.encode.remote(["warm up"]), self.store.open_index.remote()]
        if llm:
            refs.append(self.llm.warm_up.remote())
        ray.get(refs)

    def stop(self) -> None:
        """End the actors of this REVERIE_HOME. The encoder and the arbiter are shared by every
        home on the cluster (they hold no state of one), so they stay for the others."""
        for name in ("store", "llm", "memory", "feedback"):
            if name in self._handles:
                ray.kill(self._handles[name])


# The local Ray starts no idle workers ahead of need: each holds ~45 MB, and a one-shot command or a
# server that answers from its replicas may never use them (rollout tasks start them when they come).
LOCAL_RAY_CONFIG = {"prestart_worker_first_driver": False, "enable_worker_prestart": False}


def init_ray(settings: Settings) -> None:
    """Connect to `settings.address`, or start a local single-node Ray.

    Ray's auth mode is decided here, not left to Ray's default (which says so on every call): the
    local cluster Reverie starts keeps token auth on, because its ports listen on every interface;
    a cluster it joins keeps the mode it has (RAY_AUTH_MODE and RAY_AUTH_TOKEN as its nodes use them)."""
    if ray.is_initialized():
        return
    if not settings.address and "RAY_AUTH_MODE" not in os.environ:
        # Ray's own switch to token mode (environment and its cached config, which was read at import)
        from ray._private.authentication.authentication_token_setup import _enable_token_auth

        _enable_token_auth()
    local = {} if settings.address else {"_system_config": LOCAL_RAY_CONFIG}
    if not settings.address:
        # Ray's processes run many threads, and glibc gives each its own heap: two heaps per process
        # keep the memory a thread freed from staying with that thread.
        os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    ray.init(
        # "local": without an address, Ray would join the last cluster `ray start` left on this machine
        address=settings.address or "local",
        namespace=NAMESPACE,
        **local,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={
            "env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        },
    )


def ray_summary(settings: Settings) -> str:
    """One line on the Ray this process uses, for `reverie serve` to say once."""
    mode = os.environ.get("RAY_AUTH_MODE", "Ray's default")
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    if settings.address:
        return f"Ray: joined the cluster at {settings.address} ({nodes} nodes, auth mode {mode})"
    return (
        f"Ray: a local single-node cluster, token auth {'on' if mode == 'token' else mode} "
        "(its ports listen on every interface; `ray` and `serve` commands need RAY_AUTH_MODE=token)"
    )


@ray.remote(num_cpus=0)
class LearnerActor:
    """The online learner beside the service (`reverie serve --learn`): a thread that, every
    `learn_interval_s`, runs one learner update of each trained policy that has new ratings or facts
    (reverie/agents/path_policy/online.py). Answers pick the new versions up from disk."""

    def __init__(self, settings: Settings):
        import threading

        self.settings = settings
        self.last: list[dict] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reverie-learner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import torch

        from reverie.agents.path_policy.config import LearnerConfig
        from reverie.agents.path_policy.online import learn, trained_policies

        torch.set_num_threads(1)  # beside the service: leave the other cores to answers
        config = LearnerConfig(minutes=self.settings.learn_minutes)
        while not self._stop.wait(self.settings.learn_interval_s):
            try:
                self.last = [learn(self.settings, name, config) for name in trained_policies(self.settings)]
                self.error = None
            except Exception as exc:  # a bad update must not stop the learner; it tries again next time
                log.exception("the online learner's update failed")
                self.error = f"{type(exc).__name__}: {exc}"

    def status(self) -> dict:
        return {"alive": self._thread.is_alive(), "last": self.last, "error": self.error}

    def stop(self) -> None:
        self._stop.set()


def learner_actor(settings: Settings) -> "ray.actor.ActorHandle":
    """The one learner of this home (on this node, where REVERIE_HOME's files are)."""
    return _actor(LearnerActor, f"learner-{home_tag(settings)}", settings, pin=True)
