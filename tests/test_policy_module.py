"""The path policy: PathPolicyNet without Ray, its checkpoints, the RLModule wrapper, and a short PPO run."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from reverie.agents.path_policy.config import EnvConfig, NetConfig, PolicyMeta, PolicyTrainConfig
from reverie.agents.path_policy.net import (
    MASK_LOGIT,
    PathPolicyNet,
    load_policy,
    obs_to_tensors,
    read_policy_meta,
    rollout_success,
    save_policy,
)
from testkit.datasets import write_toy_dataset

E, NR, HOPS, A, B = 12, 7, 3, 6, 5  # entities, relation ids (2R+1, R=3), hops, action width, batch


def make_obs(seed: int = 0, batch: int = B, hops: int = HOPS, width: int = A, n_ent: int = E, n_rel: int = NR) -> dict:
    """A hand-made observation batch in the KGPathVectorEnv layout (reverie/agents/path_policy/env.py)."""
    rng = np.random.default_rng(seed)
    no_op = n_rel - 1
    source = rng.integers(0, n_ent, batch)
    step = np.arange(batch) % (hops + 1)
    path_rel = rng.integers(0, n_rel - 1, (batch, hops))
    path_ent = rng.integers(0, n_ent, (batch, hops))
    for b in range(batch):  # padding after `step`: NO_OP relation, source entity, as the env does
        path_rel[b, step[b] :] = no_op
        path_ent[b, step[b] :] = source[b]
    current = np.where(step > 0, path_ent[np.arange(batch), np.maximum(step - 1, 0)], source)
    action_rel = rng.integers(0, n_rel - 1, (batch, width))
    action_rel[:, 0] = no_op
    action_ent = rng.integers(0, n_ent, (batch, width))
    action_ent[:, 0] = current
    mask = (rng.random((batch, width)) < 0.6).astype(np.int8)
    mask[:, 0] = 1
    mask[0, 1:] = 0  # one row where only NO_OP is allowed
    return {
        "source": source.astype(np.int64),
        "query_relation": rng.integers(0, n_rel - 1, batch).astype(np.int64),
        "current": current.astype(np.int64),
        "step": step.astype(np.int64),
        "path_relations": path_rel.astype(np.int64),
        "path_entities": path_ent.astype(np.int64),
        "action_relations": action_rel.astype(np.int64),
        "action_entities": action_ent.astype(np.int64),
        "action_mask": mask,
    }


@pytest.fixture()
def net() -> PathPolicyNet:
    torch.manual_seed(0)
    return PathPolicyNet(E, NR, NetConfig(entity_dim=16, relation_dim=8, lstm_dim=16, state_dim=16)).eval()


def test_shapes_and_masking(net):
    obs = make_obs()
    logits, values = net(obs_to_tensors(obs))
    assert logits.shape == (B, A) and logits.dtype == torch.float32
    assert values.shape == (B,)
    mask = torch.as_tensor(obs["action_mask"]).bool()
    probs = torch.softmax(logits, dim=-1)
    assert torch.all(probs[~mask] < 1e-12)
    assert torch.allclose(probs.sum(-1), torch.ones(B))
    assert probs[0, 0].item() == pytest.approx(1.0)  # only NO_OP allowed in row 0
    assert torch.all(logits[~mask] == MASK_LOGIT)  # large negative, not -inf
    dist = torch.distributions.Categorical(logits=logits)
    assert torch.isfinite(dist.entropy()).all()
    assert torch.isfinite(
        torch.distributions.kl_divergence(dist, torch.distributions.Categorical(logits=logits * 0.5))
    ).all()
    greedy = net.act(obs, greedy=True)
    assert mask[torch.arange(B), torch.as_tensor(greedy)].all()
    sampled = net.act(obs, greedy=False, generator=torch.Generator().manual_seed(0))
    assert mask[torch.arange(B), torch.as_tensor(sampled)].all()


def test_history_lstm_uses_the_path(net):
    obs = make_obs()
    base, _ = net(obs_to_tensors(obs))
    changed = dict(obs)
    changed["path_relations"] = obs["path_relations"].copy()
    row = int(np.nonzero(obs["step"] == HOPS)[0][0])  # a walk with a full path
    changed["path_relations"][row, 0] = (obs["path_relations"][row, 0] + 1) % (NR - 1)
    logits, _ = net(obs_to_tensors(changed))
    allowed = torch.as_tensor(obs["action_mask"][row]).bool()
    assert not torch.allclose(logits[row][allowed], base[row][allowed])
    others = [b for b in range(B) if b != row]
    assert torch.allclose(logits[others], base[others])


def test_padding_after_step_is_ignored(net):
    obs = make_obs()
    base, base_v = net(obs_to_tensors(obs))
    padded = dict(obs)
    padded["path_relations"] = obs["path_relations"].copy()
    padded["path_entities"] = obs["path_entities"].copy()
    for b in range(B):
        padded["path_relations"][b, obs["step"][b] :] = -1  # any padding convention
        padded["path_entities"][b, obs["step"][b] :] = (b * 5) % E
    logits, values = net(obs_to_tensors(padded))
    assert torch.allclose(logits, base) and torch.allclose(values, base_v)


@pytest.mark.parametrize("n_ent,width,batch", [(12, 6, 5), (4, 6, 5), (300, 6, 200), (300, 6, 5)])
def test_scoring_paths_agree(n_ent, width, batch):
    """The net picks among three equal ways to score actions by size; all equal W[concat(rel, ent)]."""
    torch.manual_seed(1)
    model = PathPolicyNet(n_ent, NR, NetConfig(entity_dim=16, relation_dim=8, lstm_dim=16, state_dim=16))
    obs = obs_to_tensors(make_obs(seed=3, batch=batch, width=width, n_ent=n_ent))
    logits, _ = model(obs)
    state = model.state(obs)
    emb = torch.cat([model.relation_emb(obs["action_relations"]), model.entity_emb(obs["action_entities"])], dim=-1)
    ref = torch.einsum("bs,bas->ba", state[:, 0], model.action_proj(emb)).masked_fill(
        obs["action_mask"] == 0, MASK_LOGIT
    )
    assert torch.allclose(logits, ref, atol=1e-5)


def test_checkpoint_round_trip(net, tmp_path):
    folder = save_policy(net, tmp_path / "policies" / "toy", meta=PolicyMeta(dataset="toy", env=EnvConfig(hops=HOPS)))
    config = json.loads((folder / "config.json").read_text())
    assert config["net"]["num_entities"] == E and config["meta"]["dataset"] == "toy"
    state = torch.load(folder / config["weights"], weights_only=True)  # a plain state dict
    assert set(state) == set(net.state_dict())

    loaded = load_policy(folder)
    assert not loaded.training and read_policy_meta(folder) == PolicyMeta(dataset="toy", env=EnvConfig(hops=HOPS))
    obs = obs_to_tensors(make_obs(seed=7))
    with torch.no_grad():
        l1, v1 = net(obs)
        l2, v2 = loaded(obs)
    assert torch.equal(l1, l2) and torch.equal(v1, v2)
    assert torch.equal(load_policy(folder / "config.json")(obs)[0], l1)

    # saving again replaces the pair atomically and leaves one weights file
    with torch.no_grad():
        net.value_head[-1].bias.add_(1.0)
    save_policy(net, folder)
    assert len(list(folder.glob("policy-*.pt"))) == 1
    assert not list(folder.glob(".*.tmp"))
    assert torch.allclose(load_policy(folder)(obs)[1], v1 + 1.0)


def test_load_policy_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path)


def test_rlmodule_wraps_net():
    pytest.importorskip("ray.rllib")
    import gymnasium as gym
    from ray.rllib.core.columns import Columns

    from reverie.agents.path_policy.module import PathPolicyModule

    box = lambda high, shape, dtype=np.int64: gym.spaces.Box(0, high, shape, dtype)  # noqa: E731
    space = gym.spaces.Dict(
        {
            "source": box(E - 1, ()),
            "query_relation": box(NR - 2, ()),
            "current": box(E - 1, ()),
            "step": box(HOPS, ()),
            "path_relations": box(NR - 1, (HOPS,)),
            "path_entities": box(E - 1, (HOPS,)),
            "action_relations": box(NR - 1, (A,)),
            "action_entities": box(E - 1, (A,)),
            "action_mask": box(1, (A,), np.int8),
        }
    )
    module = PathPolicyModule(
        observation_space=space, action_space=gym.spaces.Discrete(A), model_config={"entity_dim": 8}
    )
    assert module.net.config["num_entities"] == E and module.net.config["num_relation_ids"] == NR  # from the space
    batch = {Columns.OBS: obs_to_tensors(make_obs())}
    out = module.forward_exploration(batch)
    assert out[Columns.ACTION_DIST_INPUTS].shape == (B, A)
    train = module.forward_train(batch)
    values = module.compute_values(batch, embeddings=train[Columns.EMBEDDINGS])
    assert values.shape == (B,)
    assert torch.allclose(values, module.compute_values(batch))
    assert torch.allclose(train[Columns.ACTION_DIST_INPUTS], module.net(batch[Columns.OBS])[0])


# ---------------------------------------------------------------------------------------------- PPO


@pytest.mark.ray
@pytest.mark.slow
def test_ppo_training_beats_untrained(ray_cluster, tmp_path):
    from reverie.agents.path_policy.env import KGPathVectorEnv
    from reverie.agents.path_policy.train import train_policy
    from reverie.config import Settings

    dataset = tmp_path / "toyfamily"
    write_toy_dataset(dataset)
    settings = Settings(home=tmp_path / "home")
    hops = 2
    eval_env = KGPathVectorEnv(
        {"dataset": str(dataset), "num_envs": 256, "hops": hops, "seed": 1, "action_dropout": 0.0, "shaping": 0.0}
    )
    torch.manual_seed(0)
    untrained = PathPolicyNet(eval_env.graph.num_entities, eval_env.graph.num_relation_ids)
    before = rollout_success(untrained, eval_env, episodes=2048, greedy=False, seed=1)

    reports = []
    started = time.perf_counter()
    # no world model here (shaping 0): PPO alone must learn the toy's relation patterns
    config = PolicyTrainConfig(dataset=str(dataset), iterations=12, envs=64, seed=0).replace(
        env={"hops": hops, "shaping": 0.0}
    )
    folder = train_policy(settings, config, progress=reports.append)
    seconds = time.perf_counter() - started
    assert folder == settings.home / "policies" / "toyfamily"
    assert [r["iteration"] for r in reports] == list(range(1, 13))
    assert all(r["env_steps_per_s"] > 0 for r in reports)

    trained = load_policy(folder)  # no Ray needed from here on
    meta = read_policy_meta(folder)
    assert meta.dataset == "toyfamily" and meta.env == config.env and meta.iterations == 12 and meta.envs == 64
    after = rollout_success(trained, eval_env, episodes=2048, greedy=False, seed=1)
    after_greedy = rollout_success(trained, eval_env, episodes=2048, greedy=True, seed=1)
    print(
        f"\nsuccess before {before:.3f}, after {after:.3f} (greedy {after_greedy:.3f}); "
        f"train {seconds:.1f}s, {reports[-1]['env_steps']} env steps, "
        f"{np.median([r['env_steps_per_s'] for r in reports]):.0f} env steps/s in train(), "
        f"return {reports[0]['episode_return_mean']:.3f} -> {reports[-1]['episode_return_mean']:.3f}"
    )
    assert after > before + 0.1
    assert after_greedy > before


def test_experts_mix_by_the_gate_over_the_query():
    torch.manual_seed(2)
    model = PathPolicyNet(E, NR, NetConfig(entity_dim=16, relation_dim=8, lstm_dim=16, state_dim=16, experts=4)).eval()
    obs = obs_to_tensors(make_obs(seed=5))
    with torch.no_grad():
        logits, values = model(obs)
        mixed, per_expert, log_gate = model.expert_log_probs(obs)
    assert per_expert.shape == (B, 4, A) and log_gate.shape == (B, 4) and values.shape == (B,)
    np.testing.assert_allclose(log_gate.exp().sum(1).numpy(), 1.0, rtol=1e-5)
    # the policy is the gate-weighted mixture of the experts' distributions
    probs = torch.softmax(logits, dim=-1)
    manual = (log_gate.exp().unsqueeze(-1) * per_expert.exp()).sum(1)
    assert torch.allclose(probs, manual, atol=1e-5) and torch.allclose(mixed.exp(), manual, atol=1e-5)
    # masked actions get nothing from any expert
    mask = obs["action_mask"].bool()
    assert (probs[~mask] == 0).all() and (per_expert.exp()[~mask.unsqueeze(1).expand(-1, 4, -1)] == 0).all()
    # the experts differ, and the gate depends on the query relation only
    assert not torch.allclose(per_expert[:, 0], per_expert[:, 1])
    same_query = dict(obs, query_relation=torch.full_like(obs["query_relation"], 2))
    with torch.no_grad():
        gate = model.log_gate(same_query)
    assert torch.allclose(gate, gate[:1].expand_as(gate))


def test_checkpoint_round_trip_with_experts(tmp_path):
    torch.manual_seed(3)
    model = PathPolicyNet(E, NR, NetConfig(8, 8, 8, 8, experts=4)).eval()
    loaded = load_policy(save_policy(model, tmp_path / "p"))
    assert loaded.config["experts"] == 4
    obs = obs_to_tensors(make_obs(seed=9))
    with torch.no_grad():
        assert torch.equal(model(obs)[0], loaded(obs)[0])
    with pytest.raises(ValueError, match="experts"):
        NetConfig(experts=0)


@pytest.mark.ray
@pytest.mark.slow
def test_training_with_a_world_model_gives_a_self_contained_bundle(ray_cluster, tmp_path):
    from reverie.agents.path_policy.bundle import WORLD_MODEL_FILE, load_bundle
    from reverie.agents.path_policy.evaluate import PATH_WEIGHTS, evaluate_bundle
    from reverie.agents.path_policy.train import train_policy
    from reverie.config import Settings
    from reverie.data.kg import load_dataset

    dataset = tmp_path / "toyfamily"
    write_toy_dataset(dataset)
    settings = Settings(home=tmp_path / "home")
    config = PolicyTrainConfig(dataset=str(dataset), iterations=2, envs=32).replace(
        env={"hops": 2, "imagined_edges": 2}, net={"experts": 4}, world_model={"dim": 16, "epochs": 5}
    )
    folder = train_policy(settings, config)
    assert settings.paths.world_model("toyfamily").is_file() and (folder / WORLD_MODEL_FILE).is_file()
    data = load_dataset(str(dataset))
    bundle = load_bundle(folder, data)
    assert bundle.world_model is not None and bundle.graph.imagined_per_entity == 2
    assert (
        bundle.net.config["experts"] == 4 and bundle.meta.arbiter_weight in PATH_WEIGHTS and bundle.meta.temperature > 0
    )
    # inference walks the very action tables training walked (imagined columns included)
    from reverie.agents.path_policy.env import KGPathVectorEnv
    from reverie.agents.path_policy.train import env_config

    env = KGPathVectorEnv(env_config(config, folder / WORLD_MODEL_FILE), num_envs=1)
    for table in ("action_relations", "action_entities", "action_mask"):
        np.testing.assert_array_equal(getattr(bundle.graph, table), getattr(env.graph, table))
    result = evaluate_bundle(bundle, data, split="test", beam=8)
    assert result["queries"] == 5
    bundle.meta.arbiter_weight = 0.0  # no weight on the paths: the arbiter ranks as the world model does
    alone = evaluate_bundle(bundle, data, split="test", beam=8)
    assert {k: alone[k] for k in ("hits@1", "mrr")} == {k: alone["world_model"][k] for k in ("hits@1", "mrr")}
