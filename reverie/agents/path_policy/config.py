"""What the path policy is trained with, in one place (CleanRL's `Args`).

`PolicyTrainConfig`. Each part has one home and one set of defaults: the walks
(`EnvConfig`, read by KGPathVectorEnv), the network (`NetConfig`, read by PathPolicyNet), PPO
(`PPOSettings`) and the world model that shapes rewards (`WorldModelConfig`, in
reverie/models/world_model.py). A trained policy's checkpoint records a `PolicyMeta`.

"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from reverie.agents.ppo import PPOSettings
from reverie.errors import ConfigError
from reverie.models.world_model import WorldModelConfig

SHAPERS = ("world-model", "reasoner")


@dataclass(frozen=True)
class EnvConfig:
    """How KGPathVectorEnv poses walks and rewards them."""

    hops: int = 3
    """Steps per walk; NO_OP (stay) counts as a step, so a walk may answer in fewer hops."""
    max_actions: int = 200
    """Width of the per-entity action tables; an entity with more edges keeps a seeded sample."""
    shaping: float = 1.0
    """Reward of a wrong answer, times the world model's belief in it (MultiHopKG's reward shaping); 0 turns it off."""
    shaper: Literal["world-model", "reasoner"] = "world-model"
    """Whose belief shapes a wrong answer's reward: the world model's (MultiHopKG's recipe), or the graph
    reasoner's (`reverie train reasoner` first)."""
    shaping_mode: Literal["relative", "sigmoid"] = "relative"
    """Belief as exp(score - best score) ("relative"), or MultiHopKG's sigmoid(score), which PyKEEN's
    softmax-trained models leave near 1 for most entities."""
    action_dropout: float = 0.1
    """Probability of hiding each non-NO_OP action in an observation while training (exploration)."""
    imagined_edges: int = 0
    """Edges per entity that the world model proposes and walks may take (0: none)."""
    imagined_cost: float = 0.1
    """Reward taken off per imagined edge walked."""
    any_answer: bool = False
    """Reward any known training answer of the query, not only the one asked."""
    mask_query_edges: Literal["target", "all"] = "target"
    """Hide the fact asked ("target"), or every query-relation edge at the source ("all")."""
    graph_seed: int = 0
    """Seeds the action-table sample of high-degree entities, so training and inference see the same tables."""

    def __post_init__(self) -> None:
        if self.hops < 1:
            raise ConfigError(f"hops must be >= 1, got {self.hops}")
        if self.max_actions < 1:
            raise ConfigError(f"max_actions must be >= 1, got {self.max_actions}")
        if self.shaping_mode not in ("relative", "sigmoid"):
            raise ConfigError(f"shaping_mode must be 'relative' or 'sigmoid', got {self.shaping_mode!r}")
        if self.shaper not in SHAPERS:
            raise ConfigError(f"shaper must be one of {', '.join(SHAPERS)}, got {self.shaper!r}")
        if self.mask_query_edges not in ("target", "all"):
            raise ConfigError(f"mask_query_edges must be 'target' or 'all', got {self.mask_query_edges!r}")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ConfigError(f"action_dropout must be in [0, 1), got {self.action_dropout}")
        if self.imagined_edges < 0:
            raise ConfigError(f"imagined_edges must be >= 0, got {self.imagined_edges}")
        if self.shaper == "reasoner" and self.shaping == 0.0:
            raise ConfigError("shaper 'reasoner' has nothing to shape when shaping is 0")

    @property
    def needs_world_model(self) -> bool:
        """Shaping and imagined edges both need the dataset's world model."""
        return self.shaping != 0.0 or self.imagined_edges > 0


@dataclass(frozen=True)
class NetConfig:
    """The shape of PathPolicyNet."""

    entity_dim: int = 64
    """Entity embedding size (the embeddings stay zero and frozen unless `use_entities`)."""
    relation_dim: int = 64
    """Relation embedding size."""
    lstm_dim: int = 64
    """Hidden size of the LSTM over the path walked so far."""
    state_dim: int = 64
    """Size of each expert's state, which scores the actions."""
    experts: int = 1
    """Dream experts mixed by a softmax gate over the query relation (the design notes' four: 4)."""
    use_entities: bool = False
    """Let the policy see entity embeddings. Off on UMLS and Kinship (MINERVA's setting): with them
    on, the policy memorised training routes and its test MRR fell as training went on."""

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ConfigError(f"experts must be >= 1, got {self.experts}")
        for name in ("entity_dim", "relation_dim", "lstm_dim", "state_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


TEACHERS = ("auto", "reasoner", "none")


@dataclass(frozen=True)
class TeacherConfig:
    """The graph reasoner as the policy's teacher: its paths to training answers are demonstrations,
    cloned before PPO and pulled towards during it (a cross-entropy term, annealed to 0)."""

    kind: Literal["auto", "reasoner", "none"] = "auto"
    """"reasoner" (needs `reverie train reasoner` first), "none", or "auto": the reasoner when there is one."""
    queries: int = 4000
    """Training queries (facts and their inverses, sampled) the reasoner explains."""
    paths: int = 3
    """Paths per query: their weights (the reasoner's importance) make its path distribution."""
    clone_epochs: int = 30
    """Behaviour-cloning passes over the demonstrations before PPO (0: none)."""
    weight: float = 1.0
    """Weight of the cross-entropy to the reasoner's paths at PPO's start (0: no pull during PPO)."""
    anneal: float = 0.5
    """Share of PPO's iterations over which that weight falls to 0."""

    def __post_init__(self) -> None:
        if self.kind not in TEACHERS:
            raise ConfigError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.kind!r}")
        if self.queries < 1 or self.paths < 1 or self.clone_epochs < 0:
            raise ConfigError("teacher queries and paths must be >= 1 and clone_epochs >= 0")
        if self.weight < 0 or not 0 < self.anneal <= 1:
            raise ConfigError(f"teacher weight must be >= 0 and anneal in (0, 1], got {self.weight}, {self.anneal}")


@dataclass(frozen=True)
class PolicyTrainConfig:
    """What `reverie train policy` trains: the dataset, the budget, and each part's settings."""

    dataset: str = "umls"
    """A dataset name `load_dataset` accepts, or a folder in the train/dev/test[/graph] layout."""
    envs: int = 256
    """Walks one vectorised env steps together, one per sub-env (RLlib's num_envs_per_env_runner)."""
    iterations: int = 30
    """PPO iterations (algo.train() calls); with `minutes`, the cap."""
    minutes: float | None = None
    """Stop after the iteration that passes this much PPO time."""
    seed: int = 0
    """Seeds the query sampling, the network's initialisation and PPO."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The walks and their reward."""
    net: NetConfig = field(default_factory=NetConfig)
    """The policy network."""
    ppo: PPOSettings = field(default_factory=PPOSettings)
    """The optimiser."""
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """The world model trained first when `env.needs_world_model` (and not cached)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The graph reasoner teaching the policy before and during PPO."""

    def __post_init__(self) -> None:
        if self.envs < 1:
            raise ConfigError(f"envs must be >= 1, got {self.envs}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be positive, got {self.minutes}")

    def replace(self, **changes: Any) -> "PolicyTrainConfig":
        """A copy with top-level fields changed, and parts changed by `env=`, `net=`, `ppo=`,
        `world_model=`, `teacher=` dicts of their fields (or whole replacements)."""
        parts = {}
        for name in ("env", "net", "ppo", "world_model", "teacher"):
            if isinstance(changes.get(name), dict):
                parts[name] = dataclasses.replace(getattr(self, name), **changes.pop(name))
        return dataclasses.replace(self, **changes, **parts)


@dataclass
class PolicyMeta:
    """What a policy checkpoint records besides the weights: what it was trained on and with, and how it went."""

    dataset: str
    """The dataset's name (KGDataset.name): the policy's folder under REVERIE_HOME/policies."""
    dataset_arg: str = ""
    """What `load_dataset` was given (a name or a folder), to load the same graph again."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The walks it was trained on; inference rebuilds the same action tables from it."""
    envs: int = 0
    """Walks stepped together in training (the vector env's width)."""
    seed: int = 0
    """The training seed."""
    iterations: int = 0
    """PPO iterations run."""
    env_steps: int = 0
    """Environment steps sampled in training, all walks together."""
    final_return_mean: float | None = None
    """The mean episode return of the last iteration."""
    seconds: float = 0.0
    """PPO training time."""
    entities: list[str] = field(default_factory=list)
    """The WalkGraph's entity names by id: a check that a dataset gives the same graph."""
    relations: list[str] = field(default_factory=list)
    """The WalkGraph's relation names by id, likewise."""
    arbiter_weight: float = 1.0
    """Weight of path evidence against the world model when ranking answers, fit on the dev split."""
    world_weight: float = 1.0
    """Weight of the world model when a graph reasoner ranks too (the reasoner's weight is 1), fit on dev."""
    temperature: float = 1.0
    """Softmax temperature of the arbiter's scores, fit on dev: softmax(score / T) is a calibrated probability."""
    version: int = 0
    """0 as `reverie train policy` leaves it; each `reverie learn` update publishes the next."""
    teacher: str = "none"
    """Who taught it before PPO: "reasoner" (behaviour cloning of the graph reasoner's paths) or "none"."""

    @property
    def hops(self) -> int:
        return self.env.hops

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PolicyMeta":
        data = dict(data)
        env_fields = {f.name for f in dataclasses.fields(EnvConfig)}
        if "env" not in data:  # a checkpoint from before PolicyMeta kept hops and the env options apart
            env = {k: v for k, v in data.get("env_options", {}).items() if k in env_fields}
            env.update({k: data[k] for k in ("hops", "max_actions", "graph_seed") if k in data})
            data["env"], data["envs"] = env, data.get("num_envs", 0)
        if "walks" in data:  # a checkpoint from before the field was named for what it counts
            data.setdefault("envs", data.pop("walks"))
        data["env"] = EnvConfig(**{k: v for k, v in data["env"].items() if k in env_fields})
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LearnerConfig:
    """How the policy learns from use."""

    updates: int = 40
    """Gradient updates per `update` call (each a PPO batch); with `minutes`, the cap."""
    minutes: float | None = None
    """Stop an `update` call after this much time."""
    queries_per_update: int = 128
    """Queries walked per update (fresh experience and replayed together)."""
    walks_per_query: int = 8
    """Walks sampled per query: their spread is the advantage's baseline and the surprise."""
    lr: float = 5e-4
    """Adam's learning rate (lower than PPO's first training: it refines)."""
    clip: float = 0.2
    """PPO's ratio clip."""
    epochs: int = 2
    """Passes over each update's walks."""
    entropy: float = 0.01
    """Entropy bonus."""
    replay: bool = True
    """Keep experience in the prioritised replay buffer and draw from it (off: use each once)."""
    replay_share: float = 0.5
    """Share of an update's queries drawn from the replay buffer when fresh experience waits."""
    replay_capacity: int = 20_000
    """Experiences the buffer keeps; the least surprising go first."""
    alpha: float = 0.6
    """How much priority counts when drawing (0: uniform)."""
    beta: float = 0.4
    """Importance-sampling correction (1: full)."""
    ewc: float = 20.0
    """Strength of the EWC penalty (0: off), over a Fisher normalised to mean 1."""
    fisher_queries: int = 256
    """Queries of the previous version's data the Fisher information is estimated on."""
    reward_model_weight: float = 0.5
    """Weight of the reward model's centred belief (P(good) - 0.5) in the reward (0: off)."""
    teacher_weight: float = 1.0
    """Weight of the cross-entropy to the reasoner's paths at the first update, annealed linearly to 0."""
    teacher_batch: int = 256
    """Demonstrations per update."""
    max_client_weight: float = 25.0
    """The most that one client's ratings weigh together: a flood from one key counts as this many ratings."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("updates", "queries_per_update", "walks_per_query", "epochs", "replay_capacity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.replay_share <= 1.0:
            raise ConfigError(f"replay_share must be in [0, 1], got {self.replay_share}")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be positive, got {self.minutes}")
        for name in ("ewc", "reward_model_weight", "teacher_weight", "lr", "max_client_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
