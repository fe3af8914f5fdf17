"""Everything the two RL agents are trained with, in one place (CleanRL's `Args`).

The path policy: `PolicyTrainConfig`. Each part has one home and one set of defaults: the walks
(`EnvConfig`, read by KGPathVectorEnv), the network (`NetConfig`, read by PathPolicyNet), PPO
(`PPOSettings`) and the world model that shapes rewards (`WorldModelConfig`, in
reverie/models/world_model.py). A trained policy's checkpoint records a `PolicyMeta`.

The training-control agent: `TunerTrainConfig`, with the episodes it learns on (`ControlConfig`,
read by TrainingControlEnv). `reverie train policy` and `reverie train tuner` take their defaults
from here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from reverie.models.trainee import TRAINEES, Trainee
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
            raise ValueError(f"hops must be >= 1, got {self.hops}")
        if self.max_actions < 1:
            raise ValueError(f"max_actions must be >= 1, got {self.max_actions}")
        if self.shaping_mode not in ("relative", "sigmoid"):
            raise ValueError(f"shaping_mode must be 'relative' or 'sigmoid', got {self.shaping_mode!r}")
        if self.shaper not in SHAPERS:
            raise ValueError(f"shaper must be one of {', '.join(SHAPERS)}, got {self.shaper!r}")
        if self.mask_query_edges not in ("target", "all"):
            raise ValueError(f"mask_query_edges must be 'target' or 'all', got {self.mask_query_edges!r}")
        if not 0.0 <= self.action_dropout < 1.0:
            raise ValueError(f"action_dropout must be in [0, 1), got {self.action_dropout}")
        if self.imagined_edges < 0:
            raise ValueError(f"imagined_edges must be >= 0, got {self.imagined_edges}")

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
    """Dream experts mixed by a softmax gate over the query relation (the seeds' four: 4)."""
    use_entities: bool = False
    """Let the policy see entity embeddings. Off on UMLS and Kinship (MINERVA's setting): with them
    on, the policy memorised training routes and its test MRR fell as training went on."""

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ValueError(f"experts must be >= 1, got {self.experts}")
        for name in ("entity_dim", "relation_dim", "lstm_dim", "state_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class PPOSettings:
    """RLlib PPO for these short walks whose reward comes at the last step."""

    lr: float = 1e-3
    """Adam learning rate."""
    gamma: float = 1.0
    """No discount: a fixed horizon with the reward at the end."""
    lambda_: float = 0.95
    """GAE lambda."""
    entropy_coeff: float = 0.05
    """Entropy bonus (MINERVA's beta)."""
    vf_loss_coeff: float = 0.5
    """Weight of the value loss."""
    clip_param: float = 0.2
    """PPO's policy-ratio clip."""
    vf_clip_param: float = 1.0
    """Value clip; returns lie in [0, 1 + shaping]."""
    kl_coeff: float = 0.0
    """No KL penalty: the clip alone bounds the update."""
    num_epochs: int = 4
    """SGD passes over each train batch."""
    batches_per_iteration: int = 8
    """The train batch is walks x hops x this many env steps."""
    minibatch_size: int = 1024
    """SGD minibatch (capped at the train batch)."""

    def rllib_training(self, walks: int, hops: int) -> dict[str, Any]:
        """Keyword arguments of PPOConfig.training() for `walks` walks of `hops` steps."""
        train_batch = walks * hops * self.batches_per_iteration
        return {
            "lr": self.lr, "gamma": self.gamma, "lambda_": self.lambda_, "entropy_coeff": self.entropy_coeff,
            "vf_loss_coeff": self.vf_loss_coeff, "clip_param": self.clip_param, "vf_clip_param": self.vf_clip_param,
            "kl_coeff": self.kl_coeff, "num_epochs": self.num_epochs, "train_batch_size_per_learner": train_batch,
            "minibatch_size": min(self.minibatch_size, train_batch),
        }


def schedule_factor(name: str, progress: float) -> float:
    """The base schedule at `progress` (0 at the first step, 1 after the last), relative to the base lr."""
    if name == "constant":
        return 1.0
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if name == "linear":
        return max(1.0 - progress, 0.0)
    raise ValueError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}")


SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class ControlConfig:
    """What one training-control episode is: which trainee, its budget cut into decisions, the
    base schedule the controller's residual acts on, and the reward."""

    trainee: str = "headline"
    """A key of TRAINEES."""
    trainee_config: Any = None
    """The trainee's own config (HeadlineConfig, PBTToyConfig); None takes its defaults."""
    intervals: int = 20
    """Decisions per run: the budget is cut into this many equal intervals."""
    schedule: str = "cosine"
    """Base schedule: "cosine", "linear" or "constant"."""
    base_lr: float = 1e-3
    """The schedule's peak learning rate (every arm starts here)."""
    base_weight_decay: float = 1e-4
    max_lr_exponent: int = 5
    """The multiplier 2^k stays within 2^-5 .. 2^5 of the schedule."""
    max_wd_exponent: int = 2
    """Weight decay stays within 10^-2 .. 10^2 of its base."""
    final_weight: float = 1.0
    """Weight of the final validation accuracy in the last reward."""
    seeds: tuple[int, ...] = tuple(range(100, 1100))
    """Run seeds an episode draws from (training); evaluation uses others."""
    train_subsets: tuple[int, ...] = ()
    """Domain randomisation for the headline trainee: each run trains on the first of these sizes
    its seed picks (seed mod count; 0 = the whole train split), so an agent meets runs that
    under-fit and runs that over-fit. Empty: the trainee config's own."""
    base_lrs: tuple[float, ...] = ()
    """Domain randomisation of the starting point: each run's schedule peaks at the one of these its
    seed picks (seed // 7 mod count) instead of `base_lr`, so an agent must read the run to know
    whether to raise or lower it. Empty: `base_lr` always."""

    def __post_init__(self) -> None:
        if self.trainee not in TRAINEES:
            raise ValueError(f"unknown trainee {self.trainee!r}: use one of {', '.join(TRAINEES)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if self.intervals < 1 or self.base_lr <= 0 or self.max_lr_exponent < 0 or self.max_wd_exponent < 0:
            raise ValueError("intervals must be >= 1, base_lr > 0 and the exponent bounds >= 0")
        if not self.seeds:
            raise ValueError("seeds must not be empty")

    def for_run(self, seed: int) -> "ControlConfig":
        """The config one run follows: `base_lr` as `base_lrs` picks it for this seed."""
        if not self.base_lrs:
            return self
        return dataclasses.replace(self, base_lr=float(self.base_lrs[(seed // 7) % len(self.base_lrs)]), base_lrs=())

    def make_trainee(self, seed: int, home: Any = None) -> Trainee:
        """A fresh run of the trainee, seeded."""
        config = self.trainee_config
        if config is None:
            config = default_trainee_config(self.trainee)
        if self.train_subsets and self.trainee == "headline":
            size = self.train_subsets[seed % len(self.train_subsets)]
            config = dataclasses.replace(config, train_subset=size or None)
        return TRAINEES[self.trainee](config, seed, home)


def default_trainee_config(trainee: str) -> Any:
    if trainee == "headline":
        from reverie.models.headline import HeadlineConfig

        return HeadlineConfig()
    from reverie.models.pbt_toy import PBTToyConfig

    return PBTToyConfig()


@dataclass(frozen=True)
class TunerTrainConfig:
    """What `reverie train tuner` trains: the RLlib agent that steers a training run."""

    control: ControlConfig = field(default_factory=ControlConfig)
    """The episodes it learns on: by default the headline classifier (healthtweets, MLP)."""
    iterations: int = 40
    """PPO iterations; with `minutes`, the cap."""
    minutes: float | None = None
    """Stop after the iteration that passes this much training time."""
    envs: int = 8
    """Training runs stepped together."""
    seed: int = 0
    hidden: int = 64
    """Hidden size of the agent's network."""
    ppo: PPOSettings = field(default_factory=lambda: PPOSettings(
        lr=3e-4, entropy_coeff=0.01, vf_clip_param=10.0, num_epochs=8, batches_per_iteration=2, minibatch_size=64))
    """PPO for episodes of `control.intervals` decisions: a train batch is envs x intervals x batches_per_iteration."""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.envs < 1 or self.hidden < 1:
            raise ValueError("iterations, envs and hidden must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")


@dataclass(frozen=True)
class PolicyTrainConfig:
    """What `reverie train policy` trains: the dataset, the budget, and each part's settings."""

    dataset: str = "umls"
    """A dataset name `load_dataset` accepts, or a folder in the train/dev/test[/graph] layout."""
    walks: int = 256
    """Walks one vectorised env steps together (RLlib's num_envs_per_env_runner)."""
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

    def __post_init__(self) -> None:
        if self.walks < 1:
            raise ValueError(f"walks must be >= 1, got {self.walks}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be positive, got {self.minutes}")

    def replace(self, **changes: Any) -> "PolicyTrainConfig":
        """A copy with top-level fields changed, and parts changed by `env=`, `net=`, `ppo=`,
        `world_model=` dicts of their fields (or whole replacements)."""
        parts = {}
        for name in ("env", "net", "ppo", "world_model"):
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
    walks: int = 0
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
            data["env"], data["walks"] = env, data.get("num_envs", 0)
        data["env"] = EnvConfig(**{k: v for k, v in data["env"].items() if k in env_fields})
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
