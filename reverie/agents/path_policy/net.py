"""The path policy's computing core: a plain torch module, no Ray.

`PathPolicyNet` maps a batch of KGPathVectorEnv observations (reverie/agents/path_policy/env.py) to masked
action logits and state values. The RLlib RLModule in module.py only wraps it, so a trained policy
loads and runs for inference with torch alone (`load_policy`).

Architecture (MINERVA-like):
  - entity and relation embeddings;
  - an LSTM over the path so far: a start token (START relation, source entity) followed by one
    (relation emb, entity emb) pair per hop taken; the observation's `step` says how many hops are
    real, and the LSTM output after exactly that many hops is used (the LSTM is causal, so padding
    after position `step` never reaches it);
  - K expert states = MLP_k(concat(LSTM hidden, current entity emb, query relation emb));
  - expert k's action logits = state_k . W[concat(action relation emb, action entity emb)];
  - with K > 1 experts (the design notes' dream experts), a gate softmax(G query relation emb) mixes
    them: pi(a) = sum_k gate_k pi_k(a), so the logits are log of that mixture. Which expert made a
    path is the one with the largest posterior gate_k prod_t pi_k(a_t) (`expert_log_probs`);
  - logits are masked with action_mask by a large negative constant (not -inf, so PPO's KL and
    entropy stay finite);
  - value = MLP(mean of the expert states).

Checkpoints follow reverie/checkpoints.py: a folder with config.json and the `policy-<hash>.pt`
state dict it names, written so that a reader always finds a complete, matching pair.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from reverie.agents.path_policy.config import NetConfig, PolicyMeta
from reverie.checkpoints import load_weights, read_checkpoint, save_checkpoint

MASK_LOGIT = -1.0e9
"""Logit given to masked actions: softmax makes them exactly 0, yet log-probs stay finite."""

OBS_KEYS = (
    "source",
    "query_relation",
    "current",
    "step",
    "path_relations",
    "path_entities",
    "action_relations",
    "action_entities",
    "action_mask",
)

FORMAT = "reverie-path-policy/1"

EXPERT_NAMES = ("spatial", "temporal", "causal", "abstract")
"""Labels of the design notes' four dream experts. The gate learns which query relations each one
takes; on a dataset without such a split they are clusters of query relations, not semantics."""


def expert_name(index: int, experts: int) -> str:
    """The label recorded in provenance for expert `index` of a policy with `experts` experts."""
    if experts <= 1:
        return "policy"
    return EXPERT_NAMES[index] if experts == len(EXPERT_NAMES) else f"expert-{index}"


class PathPolicyNet(nn.Module):
    """Observation batch -> (masked action logits [B, A], values [B])."""

    def __init__(self, num_entities: int, num_relation_ids: int, config: NetConfig | None = None) -> None:
        super().__init__()
        if num_entities < 1 or num_relation_ids < 1:
            raise ValueError(f"need at least one entity and one relation id, got {num_entities}, {num_relation_ids}")
        config = config or NetConfig()
        entity_dim, relation_dim, lstm_dim = config.entity_dim, config.relation_dim, config.lstm_dim
        state_dim, experts, use_entities = config.state_dim, config.experts, config.use_entities
        self.net_config = config
        # What a checkpoint stores to rebuild the net: the sizes and the NetConfig.
        self.config: dict[str, int] = {
            "num_entities": int(num_entities),
            "num_relation_ids": int(num_relation_ids),
            **{k: int(v) for k, v in dataclasses.asdict(config).items()},
        }
        self.start_relation = int(num_relation_ids)  # one extra row: the start-of-path token
        self.entity_emb = nn.Embedding(num_entities, entity_dim)
        self.relation_emb = nn.Embedding(num_relation_ids + 1, relation_dim)
        step_dim = relation_dim + entity_dim
        self.lstm = nn.LSTM(step_dim, lstm_dim, batch_first=True)
        self.state_mlp = nn.Sequential(
            nn.Linear(lstm_dim + entity_dim + relation_dim, state_dim * experts),
            nn.ReLU(),
            nn.Linear(state_dim * experts, state_dim * experts),
        )
        self.gate = nn.Linear(relation_dim, experts) if experts > 1 else None
        self.action_proj = nn.Linear(step_dim, state_dim, bias=False)
        self.value_head = nn.Sequential(nn.Linear(state_dim, state_dim), nn.ReLU(), nn.Linear(state_dim, 1))
        nn.init.normal_(self.entity_emb.weight, std=0.1)
        if not use_entities:
            # As MINERVA on UMLS and Kinship: entity vectors are zero and frozen, so the policy
            # reasons from relations and the path's shape and cannot memorise entity routes.
            nn.init.zeros_(self.entity_emb.weight)
            self.entity_emb.weight.requires_grad_(False)
        nn.init.normal_(self.relation_emb.weight, std=0.1)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PathPolicyNet":
        """The net a checkpoint's `config` describes (sizes plus NetConfig fields)."""
        fields = {f.name: f.type for f in dataclasses.fields(NetConfig)}
        given: dict[str, Any] = {
            k: (bool(v) if k == "use_entities" else int(v)) for k, v in config.items() if k in fields
        }
        net = NetConfig(**given)
        return cls(int(config["num_entities"]), int(config["num_relation_ids"]), net)

    # -- pieces -------------------------------------------------------------------------------

    def _ids(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Ids as int64 within [0, size); padding such as -1 becomes a harmless valid id."""
        return x.long().clamp(0, size - 1)

    def state(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The expert states [B, experts, state_dim] from the query, the current entity and the path so far."""
        n_ent = self.config["num_entities"]
        n_rel = self.config["num_relation_ids"]
        source = self._ids(obs["source"], n_ent).reshape(-1)
        batch = source.shape[0]
        query = self._ids(obs["query_relation"], n_rel).reshape(batch)
        current = self._ids(obs["current"], n_ent).reshape(batch)
        path_rel = self._ids(obs["path_relations"], n_rel).reshape(batch, -1)
        path_ent = self._ids(obs["path_entities"], n_ent).reshape(batch, -1)
        hops = path_rel.shape[1]
        step = obs["step"].long().reshape(batch).clamp(0, hops)

        start_rel = torch.full((batch, 1), self.start_relation, dtype=torch.long, device=source.device)
        rels = torch.cat([start_rel, path_rel], dim=1)  # [B, hops+1]
        ents = torch.cat([source.unsqueeze(1), path_ent], dim=1)  # [B, hops+1]
        seq = torch.cat([self.relation_emb(rels), self.entity_emb(ents)], dim=-1)
        out, _ = self.lstm(seq)  # [B, hops+1, lstm_dim]
        history = out[torch.arange(batch, device=out.device), step]  # output after `step` real hops

        features = torch.cat([history, self.entity_emb(current), self.relation_emb(query)], dim=-1)
        if self.config["experts"] == 1:  # block-diagonal experts would waste work; one is just the MLP
            return self.state_mlp(features).unsqueeze(1)
        return self.state_mlp(features).reshape(batch, self.config["experts"], self.config["state_dim"])

    def log_gate(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """log gate_k [B, experts] over the query relation (zeros for one expert)."""
        query = self._ids(obs["query_relation"], self.config["num_relation_ids"]).reshape(-1)
        if self.gate is None:
            return torch.zeros(query.shape[0], 1)
        return torch.log_softmax(self.gate(self.relation_emb(query)), dim=-1)

    def expert_logits(self, state: torch.Tensor, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Each expert's masked action logits [B, experts, A]."""
        batch, experts = state.shape[0], state.shape[1]
        flat = state.reshape(batch * experts, -1)
        logits = self._score_actions(
            flat,
            {
                k: obs[k].repeat_interleave(experts, 0) if experts > 1 else obs[k]
                for k in ("action_relations", "action_entities")
            },
        )
        logits = logits.reshape(batch, experts, -1)
        mask = obs["action_mask"].reshape(batch, 1, -1) > 0
        return logits.masked_fill(~mask, MASK_LOGIT)

    def logits_from_state(self, state: torch.Tensor, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Masked action logits [B, A] of the policy (the gate's mixture of experts)."""
        logits = self.expert_logits(state, obs)
        if logits.shape[1] == 1:
            return logits[:, 0]
        mixed = torch.logsumexp(self.log_gate(obs).unsqueeze(-1) + torch.log_softmax(logits, dim=-1), dim=1)
        return mixed.masked_fill(obs["action_mask"].reshape(mixed.shape) <= 0, MASK_LOGIT)

    def expert_log_probs(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(policy log-probs [B, A], each expert's log-probs [B, experts, A], log gate [B, experts])."""
        state = self.state(obs)
        per_expert = torch.log_softmax(self.expert_logits(state, obs), dim=-1)
        log_gate = self.log_gate(obs)
        mixed = torch.logsumexp(log_gate.unsqueeze(-1) + per_expert, dim=1)
        return mixed, per_expert, log_gate

    def _score_actions(self, state: torch.Tensor, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Unmasked logits [B, A]: state . W[concat(action relation emb, action entity emb)]."""
        batch = state.shape[0]
        a_rel = self._ids(obs["action_relations"], self.config["num_relation_ids"]).reshape(batch, -1)
        a_ent = self._ids(obs["action_entities"], self.config["num_entities"]).reshape(batch, -1)
        # W[concat(rel, ent)] == W_rel rel + W_ent ent, so three equal ways to score; pick the cheapest:
        #  - small graphs (E + relation ids <= 4A): score every entity and relation per row, then gather;
        #  - else, when B x A exceeds the tables: project the tables once, gather, dot;
        #  - else: project the B x A concatenations directly.
        n_ent, n_rel = self.config["num_entities"], self.config["num_relation_ids"] + 1
        width = a_rel.shape[1]
        dr = self.config["relation_dim"]
        weight = self.action_proj.weight  # [state_dim, relation_dim + entity_dim]
        if n_ent + n_rel <= 4 * width:
            rel_table = nn.functional.linear(self.relation_emb.weight, weight[:, :dr])  # [n_rel, S]
            ent_table = nn.functional.linear(self.entity_emb.weight, weight[:, dr:])  # [n_ent, S]
            logits = torch.gather(state @ rel_table.T, 1, a_rel) + torch.gather(state @ ent_table.T, 1, a_ent)
        elif batch * width > n_ent + n_rel:
            rel_table = nn.functional.linear(self.relation_emb.weight, weight[:, :dr])
            ent_table = nn.functional.linear(self.entity_emb.weight, weight[:, dr:])
            actions = rel_table[a_rel] + ent_table[a_ent]  # [B, A, S]
            logits = torch.einsum("bs,bas->ba", state, actions)
        else:
            actions = self.action_proj(torch.cat([self.relation_emb(a_rel), self.entity_emb(a_ent)], dim=-1))
            logits = torch.einsum("bs,bas->ba", state, actions)
        return logits

    def value_from_state(self, state: torch.Tensor) -> torch.Tensor:
        """State values [B]."""
        return self.value_head(state.mean(dim=1)).squeeze(-1)

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.state(obs)
        return self.logits_from_state(state, obs), self.value_from_state(state)

    # -- inference helpers ----------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: Mapping[str, Any], greedy: bool = True, generator: torch.Generator | None = None) -> np.ndarray:
        """Actions (column indices) for a numpy or torch observation batch: argmax, or a sample."""
        logits, _ = self(obs_to_tensors(obs))
        if greedy:
            return logits.argmax(dim=-1).cpu().numpy()
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1).cpu().numpy()


def obs_to_tensors(obs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A dict observation batch (numpy arrays or tensors) as torch tensors."""
    return {
        k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for k, v in obs.items() if k in OBS_KEYS
    }


def rollout_success(net: PathPolicyNet, env: Any, episodes: int, greedy: bool = True, seed: int = 0) -> float:
    """Fraction of `episodes` walks that end with reward >= 1 (a correct answer) in a vector env.

    `env` is a gymnasium VectorEnv with NEXT_STEP autoreset such as KGPathVectorEnv; the reward
    arrives at the final step. Episodes are counted as they terminate, across all sub-envs.
    """
    generator = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    num_envs = env.num_envs
    done_prev = np.zeros(num_envs, dtype=bool)
    finished = successes = 0
    was_training = net.training
    net.eval()
    try:
        while finished < episodes:
            actions = net.act(obs, greedy=greedy, generator=generator)
            obs, reward, terminated, truncated, _ = env.step(actions)
            done = np.asarray(terminated) | np.asarray(truncated)
            counted = done & ~done_prev  # a step right after `done` is the autoreset step
            finished += int(counted.sum())
            successes += int((np.asarray(reward)[counted] >= 1.0).sum())
            done_prev = done
    finally:
        net.train(was_training)
    return successes / max(finished, 1)


# -- checkpoints -------------------------------------------------------------------------------


def save_policy(net: PathPolicyNet, folder: str | Path, meta: PolicyMeta | None = None) -> Path:
    """Save `net` under `folder` (reverie.checkpoints' layout); returns the folder. `meta` (what it
    was trained on and with) is stored in config.json too."""
    return save_checkpoint(
        folder, net.state_dict(), {"net": net.config, "meta": meta.to_json() if meta else None}, FORMAT, "policy"
    )


def read_policy_config(path: str | Path) -> dict[str, Any]:
    """The config.json of a checkpoint folder (or the file itself)."""
    return read_checkpoint(path, FORMAT)


def read_policy_meta(path: str | Path) -> PolicyMeta:
    """What the checkpoint in `path` (a folder or its config.json) was trained on and with."""
    meta = read_policy_config(path).get("meta")
    if not meta:
        raise ValueError(f"{path}: the checkpoint records no training meta")
    return PolicyMeta.from_json(meta)


def load_policy(path: str | Path) -> PathPolicyNet:
    """Load a checkpoint saved by `save_policy` (a folder or its config.json), in eval mode, without Ray."""
    config = read_policy_config(path)
    net = PathPolicyNet.from_config(config["net"])
    net.load_state_dict(load_weights(path, config))
    return net.eval()
