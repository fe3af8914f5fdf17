"""The hub's routers (reverie/models/hub.py) and the routing set (reverie/data/routing.py), Ray-free.

Each router is trained once per module on a quick share of the routing set (PER_ROUTE messages of
each route, few epochs): enough for the contract and for plain messages to go where they belong.
The full measure is bench/hub.py's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reverie.data.routing import routing_messages
from reverie.errors import ReverieError
from reverie.models.hub import (
    ROUTERS,
    ROUTES,
    RouteDecision,
    SpikingHub,
    fidelity,
    hub_routing_weights,
    load_router,
    make_router,
    message_fidelity,
    messages_tensor,
    mlp_width_for,
    router_for_home,
    save_router,
    shipped_router,
    train_router,
)

PER_ROUTE = 100
EPOCHS = 10
HUB_HIDDEN = 128
"""A half-width hub (and an MLP of its size) keeps the module's fits to seconds."""
FIDELITY_FLOOR = 0.35
"""Decoded fidelity at 8 steps of this quick fit (400 messages, 10 epochs, 128 neurons) measured
0.43 on held-out wordings; the full fit is bench/hub.py's (docs/hub.md). The floor leaves a
margin for other machines' float sums; it catches a decoder that has not learnt at all (~0)."""

KNOWN = [
    ("hello", None, False, "small-talk"),
    ("What happens when you drop a glass cup?", None, False, "graph"),
    ("and if you heat it?", "What happens when you drop a glass cup?", False, "follow-up"),
    ("what is this?", None, True, "image"),
]


@pytest.fixture(scope="module")
def encode(encoder):
    """The session's text encoder, remembering what it has encoded (both routers read the same texts)."""
    seen: dict[str, np.ndarray] = {}

    def cached(texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in seen]
        if missing:
            seen.update(zip(missing, encoder.encode(missing), strict=True))
        return np.stack([seen[t] for t in texts])

    return cached


@pytest.fixture(scope="module")
def trained(encode):
    sizes = {"spiking": HUB_HIDDEN, "mlp": mlp_width_for(hub_routing_weights(HUB_HIDDEN))}
    return {
        name: train_router(name, encode, epochs=EPOCHS, per_route=PER_ROUTE, hidden=sizes[name]) for name in ROUTERS
    }


def _inputs(encode, rows):
    texts = [row[0] for row in rows]
    question = encode(texts)
    memory = np.stack([encode([row[1]])[0] if row[1] else np.zeros(question.shape[1], np.float32) for row in rows])
    image = np.array([row[2] for row in rows])
    return question, image, memory


def test_routing_set_split_and_seed():
    train, test = routing_messages("train"), routing_messages("test")
    assert {m.route for m in train} == {m.route for m in test} == set(ROUTES)
    assert len(train) >= 2000 and len(test) >= 1000
    assert not {m.text for m in train} & {m.text for m in test}, "a test wording was seen in training"
    assert routing_messages("test") == test  # seeded
    assert all(m.has_image for m in test if m.route == "image")
    assert all(m.previous for m in test if m.route == "follow-up")
    with pytest.raises(ValueError):
        routing_messages("dev")  # type: ignore[arg-type]


def test_make_router_names_the_choices():
    with pytest.raises(ValueError, match="spiking.*mlp"):
        make_router("nope")


@pytest.mark.parametrize("name", list(ROUTERS))
def test_router_contract(name, trained, encode, tmp_path):
    router = trained[name]
    assert router.name == name
    question, image, memory = _inputs(encode, KNOWN)
    decisions = router.route(question, image, memory)
    assert len(decisions) == len(KNOWN)
    for decision in decisions:
        assert isinstance(decision, RouteDecision)
        assert decision.route in ROUTES and decision.router == name
        assert list(decision.probabilities) == list(ROUTES)
        assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert decision.route == max(decision.probabilities, key=decision.probabilities.get)
    assert router.route(question, image, memory) == decisions  # deterministic

    save_router(router, tmp_path / "router")
    card = json.loads((tmp_path / "router" / "router.json").read_text())
    assert card["name"] == name and 0.0 <= card["held_out_accuracy"] <= 1.0
    loaded = load_router(tmp_path / "router")
    assert type(loaded) is type(router)
    assert loaded.route(question, image, memory) == decisions
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staging folder was left behind"

    with pytest.raises(ReverieError, match="no router"):
        load_router(tmp_path / "missing")
    (tmp_path / "router" / "router.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ReverieError, match="damaged"):
        load_router(tmp_path / "router")
    (tmp_path / "router" / "router.json").write_text("{not json")
    with pytest.raises(ReverieError, match="unreadable"):
        load_router(tmp_path / "router")


@pytest.mark.parametrize("name", list(ROUTERS))
def test_known_messages_take_their_route(name, trained, encode):
    question, image, memory = _inputs(encode, KNOWN)
    routes = [d.route for d in trained[name].route(question, image, memory)]
    assert routes == [row[3] for row in KNOWN]


def test_routers_have_the_same_size(trained):
    spiking, mlp = trained["spiking"].routing_weights(), trained["mlp"].routing_weights()
    assert abs(spiking - mlp) <= 0.1 * spiking


def test_spike_trains_are_binary_and_decode(trained, encode):
    hub = trained["spiking"]
    assert isinstance(hub, SpikingHub) and hub.time_steps <= 8
    test = routing_messages("test")[:150]  # within the first PER_ROUTE of each route: encoded already
    question = encode([m.text for m in test])
    memory = np.stack(
        [encode([m.previous])[0] if m.previous else np.zeros(question.shape[1], np.float32) for m in test]
    )
    messages = messages_tensor(question, np.array([m.has_image for m in test]), memory)
    spikes = hub.encode_spikes(messages)
    assert spikes.shape == (hub.time_steps, len(test), hub.hidden)
    assert set(torch.unique(spikes).tolist()) <= {0.0, 1.0}
    assert hub.decode(spikes).shape == messages.shape
    assert fidelity(hub, messages) >= FIDELITY_FLOOR


def test_router_for_home_loads_what_it_saved_else_the_shipped_one(trained, encode, tmp_path):
    folder = tmp_path / "hub"
    save_router(trained["mlp"], folder)
    loaded = router_for_home(folder, "mlp", encode)  # saved, of that kind: loaded, not trained
    assert loaded.card["held_out_accuracy"] == trained["mlp"].card["held_out_accuracy"]
    shipped = router_for_home(tmp_path / "empty", "spiking", encode)  # none saved: the one Reverie ships
    assert shipped.card == json.loads((shipped_router("spiking") / "router.json").read_text())


@pytest.mark.parametrize("name", list(ROUTERS))
def test_the_shipped_routers_route_known_messages(name, encode):
    router = load_router(shipped_router(name))
    assert router.card["held_out_accuracy"] > 0.9
    decisions = router.route(*_inputs(encode, KNOWN))
    assert [d.route for d in decisions] == [row[3] for row in KNOWN]


def test_messages_travel_through_the_shipped_hub_as_faithful_spike_trains(encode):
    hub = load_router(shipped_router("spiking"))
    test = routing_messages("test")[:150]
    question = encode([m.text for m in test])
    memory = np.stack(
        [encode([m.previous])[0] if m.previous else np.zeros(question.shape[1], np.float32) for m in test]
    )
    messages = messages_tensor(question, np.array([m.has_image for m in test]), memory)
    encoding, _ = hub.spike_trains(messages)
    assert hub.time_steps <= 8 and set(torch.unique(encoding).tolist()) <= {0.0, 1.0}
    assert message_fidelity(hub, messages) >= 0.95
    # two steps: a neuron fires at most twice, so the rate code clips and the read-back loses fidelity
    coarse = SpikingHub(hidden=hub.hidden, time_steps=2)
    assert message_fidelity(coarse, messages) < message_fidelity(hub, messages)
