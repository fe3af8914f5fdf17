"""Pydantic models for everything that crosses a boundary: HTTP, CLI, and actor calls."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Entity(BaseModel):
    """A node of the knowledge graph."""

    name: str = Field(min_length=1, description="Unique name; also the node id.")
    type: str = Field(default="entity", description="Entity type, e.g. object, material, property, result.")
    description: str = Field(default="", description="One line of text; embedded with the name for linking.")
    image: str | None = Field(default=None, description="Optional reference (path or URI) to an image of it.")
    token: int | None = Field(
        default=None, description="An image entity's image token: its nearest centroid in the graph's codebook."
    )


class Triple(BaseModel):
    """One fact as (what, action, result): head --relation--> tail."""

    head: str = Field(min_length=1)
    relation: str = Field(min_length=1)
    tail: str = Field(min_length=1)
    source: str = Field(default="user", description="Where the fact came from (file:line, dataset name, world).")
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("head", "relation", "tail")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


class Query(BaseModel):
    """A question to Reverie."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, description="The question, in plain text.")
    rollouts: int | None = Field(
        default=None, ge=1, le=4096, description="Number of dream rollouts (default: settings)."
    )
    hops: int | None = Field(default=None, ge=1, le=6, description="Maximum hops per rollout (default: settings).")
    session_id: str | None = Field(default=None, max_length=128, description="Conversation id for follow-up questions.")
    verbalize: bool = Field(default=True, description="Put the answer into words with the LLM.")
    seed: int | None = Field(default=None, description="Seed for the rollouts; the same seed gives the same verdict.")
    stream: bool = Field(
        default=False, description="HTTP only: stream the answer's tokens, then the Verdict, as server-sent events."
    )
    image: str | None = Field(
        default=None,
        description="An image the question is about, base64-encoded (a data: URL too); it links to an entity, the question's subject.",
    )
    tree: bool = Field(
        default=False,
        description="Add the rollout tree to the Verdict: the most frequent walks merged by their common prefixes, with counts.",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the question is empty")
        return value


class Step(BaseModel):
    """One hop of a chain, with its provenance."""

    what: str
    action: str
    result: str
    edge_id: str = Field(description="Stable id of the stored edge (sha1 of head, relation, tail).")
    source: str = Field(description="Where the stored fact came from.")
    inverse: bool = Field(default=False, description="Walked against the stored direction.")
    imagined: bool = Field(default=False, description="Proposed by a world model, not stored in the graph.")


class Chain(BaseModel):
    steps: list[Step]
    answer: str
    score: float = Field(description="Path score of this chain (mean log-probability of its steps).")
    expert: str = Field(default="walker", description="Which policy or expert produced the rollout.")


class Candidate(BaseModel):
    answer: str
    score: float = Field(description="Arbiter score: agreement across rollouts plus path score.")
    votes: int = Field(description="Rollouts that ended at this answer.")
    best_chain: Chain
    confidence: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Calibrated probability that this answer is right: a trained policy's arbiter fit on dev, or "
        "the embedding walker's calibrator fit on questions made from the graph.",
    )
    subjects: list[str] = Field(
        default_factory=list, description="The linked entities whose rollouts reached this answer."
    )


class LinkedEntity(BaseModel):
    name: str
    type: str
    score: float
    how: Literal["exact", "vector", "memory", "image"]


class ImageCandidate(BaseModel):
    """An entity the question's image may show: a subject its rollouts start from."""

    name: str
    type: str
    score: float = Field(description="Cosine similarity of the image's vector and the entity's.")
    probability: float = Field(
        ge=0.0, le=1.0, description="Calibrated probability that the image shows it: the share of rollouts it seeds."
    )


class ImageLink(BaseModel):
    """Which entity a question's image was linked to, and how sure."""

    entity: str = Field(description="The entity the image links to (the question's subject).")
    type: str
    score: float = Field(
        description="Cosine similarity of the image's vector and the entity's, in the text encoder's space."
    )
    token: int | None = Field(
        default=None, description="The image's token in the graph's codebook (None before any image was ingested)."
    )
    runners_up: list[LinkedEntity] = Field(
        default_factory=list, description="The next nearest entities, for a person to check the link."
    )
    probability: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Calibrated probability that the image shows `entity`."
    )
    candidates: list[ImageCandidate] = Field(
        default_factory=list,
        description="The entities considered as the question's subject, each seeding rollouts by its probability.",
    )


class TreeNode(BaseModel):
    """A node of the rollout tree: an entity reached by one prefix of the walks."""

    id: int
    parent: int | None = Field(description="The node one hop back; None for a walk's start.")
    entity: str
    step: Step | None = Field(description="The hop from the parent to here; None for a start.")
    rollouts: int = Field(description="Rollouts that passed through this node.")
    ends: int = Field(description="Rollouts that stopped here: its votes.")


class RolloutTree(BaseModel):
    """The rollouts as a tree of branches: the most frequent distinct walks, merged by common prefix."""

    rollouts: int = Field(description="Rollouts in all.")
    shown: int = Field(description="Rollouts the tree holds; the rest took rarer walks.")
    nodes: list[TreeNode] = Field(description="Parents before their children.")


class Verdict(BaseModel):
    """Reverie's answer to a Query."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="Names this verdict in POST /v1/feedback.")
    question: str
    answer: str = Field(description="The answer sentence.")
    answer_entity: str | None = Field(
        description="The entity the best chain ends at; None when the graph does not say (`sure: false`)."
    )
    chain: Chain | None = Field(description="The chain that answers; None when the graph does not say.")
    candidates: list[Candidate] = Field(description="Ranked answers, best first.")
    alternatives: list[Chain] = Field(
        description="Best chains of the runner-up answers; when the graph does not say, the nearest chains, none "
        "of them the answer."
    )
    linked: list[LinkedEntity]
    image: ImageLink | None = Field(
        default=None, description="Where the question's image linked, when it came with one."
    )
    backend: str = Field(description="Which backend put the answer into words ('template' when verbalize is off).")
    policy: str = Field(description="Which policy walked the graph.")
    policy_version: int | None = Field(
        default=None, description="The version of a trained path policy that walked (`reverie learn` makes new ones)."
    )
    asked_relation: str | None = Field(
        default=None,
        description="The relation a trained path policy took the question to ask ('inverse of X' against its "
        "direction); what a rating of this verdict teaches it.",
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="Calibrated probability that the best answer is right, its image link's uncertainty included.",
    )
    sure: bool = Field(
        description="Whether the confidence reaches the settable threshold (REVERIE_CONFIDENCE_THRESHOLD); when "
        "not, the verdict gives no answer and says that the graph does not say.",
    )
    rollouts: int
    nodes: dict[str, int] = Field(default_factory=dict, description="Rollouts per Ray node id: where the dreams ran.")
    timings_ms: dict[str, float] = Field(description="Milliseconds per stage.")
    session_id: str | None = None
    tree: RolloutTree | None = Field(default=None, description="The rollout tree, when the Query asked for it.")
    route: Literal["graph", "follow-up", "image", "small-talk"] = Field(
        default="graph",
        description="Where the hub sent the message: a graph question, a follow-up the conversation's memory "
        "resolved, an image question, or small talk (answered by the LLM as plain chat: no chain, no candidates).",
    )
    resolved_question: str | None = Field(
        default=None,
        description="For a follow-up, the self-contained question the conversational memory asked ('And if you "
        "heat it?' -> 'And if you heat glass cup?'); None when the message was asked as it is.",
    )


class IngestReport(BaseModel):
    source: str
    triples_read: int
    triples_added: int
    entities_added: int
    relations_added: int
    seconds: float
    timings_s: dict[str, float] = Field(default_factory=dict, description="Seconds per stage: plan, encode, write.")
    folded: dict[str, int] = Field(
        default_factory=dict,
        description="New facts folded into each trained policy that knows their entities: walkable at once.",
    )


class GraphStats(BaseModel):
    entities: int
    relations: int
    triples: int


class IngestRequest(BaseModel):
    """Facts to add over HTTP, as JSON (a file upload takes the CLI's formats instead)."""

    model_config = ConfigDict(extra="forbid")

    triples: list[Triple] = Field(min_length=1, max_length=100_000)
    entities: list[Entity] = Field(
        default_factory=list,
        max_length=100_000,
        description="Optional types and descriptions of the entities the triples name.",
    )
    source: str = Field(default="http", max_length=200, description="Names this ingest in its report.")


class Fact(Triple):
    """A stored triple with its edge id."""

    edge_id: str


class RunSummary(BaseModel):
    """A training run, as GET /v1/runs lists it."""

    id: str
    kind: str = Field(description="What trained: policy (the path policy) or tuner (the tuning agent).")
    name: str = Field(description="The dataset, or the agent's name.")
    started: str = Field(description="ISO 8601 time, UTC.")
    iterations: int = Field(description="Iterations logged so far.")
    last: dict[str, Any] = Field(description="The last iteration's numbers.")


class Run(BaseModel):
    """A training run with every iteration's numbers (iteration, env_steps, episode_return_mean, ...)."""

    id: str
    kind: str
    name: str
    started: str
    points: list[dict[str, Any]]


class EntityHit(BaseModel):
    """An entity found by a graph search."""

    name: str
    type: str
    score: float = Field(
        description="1 for a whole-name match, 0.9 for a name that starts with the text, 0.8 for one that contains it; else the cosine similarity."
    )
    how: Literal["name", "vector"]


class SearchResult(BaseModel):
    query: str
    hits: list[EntityHit]


class EntityView(BaseModel):
    """An entity with every stored fact that touches it."""

    entity: Entity
    outgoing: list[Fact] = Field(description="Facts with this entity as the head (what).")
    incoming: list[Fact] = Field(description="Facts with this entity as the tail (result).")


class Feedback(BaseModel):
    """A person's rating of a verdict."""

    model_config = ConfigDict(extra="forbid")

    verdict_id: str = Field(min_length=1, max_length=64, description="The `id` of the verdict being rated.")
    rating: Literal["good", "bad", "neutral"]
    note: str = Field(default="", max_length=4000)
    verdict: Verdict | None = Field(
        default=None, description="The verdict itself; needed only when the server no longer remembers the id."
    )


class FeedbackRecord(BaseModel):
    """One line of the feedback dataset: the rating with what was rated."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    verdict_id: str
    rating: Literal["good", "bad", "neutral"]
    note: str
    question: str
    answer_entity: str | None = Field(description="None when the verdict said the graph does not say.")
    chain: Chain | None
    policy: str
    policy_version: int | None = None
    asked_relation: str | None = Field(default=None, description="The relation the policy took the question to ask.")
    subject: str | None = Field(default=None, description="The entity the answer's walks started from.")
    confidence: float | None = Field(default=None, description="The verdict's calibrated confidence.")
    agreement: float | None = Field(default=None, description="The answer's share of the rollouts' votes.")
    client: str = Field(default="local", description="Who rated: a digest of the API key, or the client's address.")


class PolicyLearning(BaseModel):
    """One trained policy's learning from use (`reverie learn`, `reverie serve --learn`)."""

    dataset: str
    version: int = Field(description="The version served now: 0 as trained, one more per learner update.")
    teacher: str = Field(description="Who taught it before PPO: 'reasoner' or 'none'.")
    kept_versions: list[int] = Field(description="Earlier versions kept under the policy's versions/ folder.")
    ratings_read: int = Field(description="Lines of the feedback dataset the learner has read.")
    ratings_used: int = Field(description="Ratings of this policy's verdicts that became experience.")
    facts_folded: int = Field(description="Facts added after training that the learner has taken in.")
    learned_facts: int = Field(description="Facts added after training, walkable now.")
    experiences: int
    last_update: dict[str, Any] | None = Field(description="The last update's numbers (reward, success, losses).")
    reward_model: dict[str, Any] | None = Field(description="The reward model's last fit (held-out ROC-AUC, ECE).")
    versions: list[dict[str, Any]] = Field(description="The last updates, oldest first.")


class LearningStatus(BaseModel):
    learner: Literal["off", "beside the service"] = Field(
        description="Whether a learner runs beside this service (`reverie serve --learn`)."
    )
    policies: list[PolicyLearning]
