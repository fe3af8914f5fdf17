"""The spiking hub against the same-size MLP router, on the routing set's held-out wordings.

Both routers are trained on reverie.data.routing's training messages (MiniLM vectors) and measured
on its test messages, whose wordings no training message has:

1. routing accuracy, overall and per route, and each router's number of routing weights;
2. the hub's decoded-message fidelity: the mean cosine between a message and what the hub's
   decoder rebuilds from its spike trains, for hubs presented the message 1, 2, 4 and 8 time steps
   (one hub trained per step count);
3. energy per message: the hub's synaptic operations (each spike times its fan-out, counted from
   the real spike trains of the test messages) and remaining MACs, against the MLP's MACs, at
   45 nm figures (4.6 pJ per 32-bit MAC, 0.9 pJ per accumulate; Horowitz, ISSCC 2014);
4. CPU latency on 1 thread, batch 1 and batch 64, median of many runs (route() as the pipeline
   calls it, numpy in, decisions out).

    python -m bench.hub   -> bench/results/hub.md   (~3-5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.common import write_table
from reverie.config import offline_hub
from reverie.data.routing import routing_messages
from reverie.models.hub import (
    AC_PJ,
    MAC_PJ,
    ROUTES,
    HubTraining,
    MLPRouter,
    SpikingHub,
    accuracy,
    encode_messages,
    energy_pj,
    fidelity,
    fit,
    message_fidelity,
    mlp_width_for,
)


def per_route_accuracy(router, data) -> dict[str, float]:
    with torch.inference_mode():
        predicted = router(data.messages).argmax(-1)
    return {route: float((predicted[data.labels == i] == i).float().mean()) for i, route in enumerate(ROUTES)}


def latency_ms(router, data, batch: int, runs: int) -> float:
    """Median milliseconds of one route() call on `batch` test messages, torch on 1 thread."""
    messages = data.messages[:batch].numpy()
    question, image, memory = messages[:, :384], messages[:, 384] > 0.5, messages[:, 385:]
    for _ in range(5):
        router.route(question, image, memory)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        router.route(question, image, memory)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=HubTraining.epochs)
    parser.add_argument("--sweep-epochs", type=int, default=10, help="epochs of the 1, 2 and 4-step hubs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    offline_hub()
    from reverie.encoders import TextEncoder

    started = time.perf_counter()
    encoder = TextEncoder()
    train = encode_messages(routing_messages("train", args.seed), encoder.encode)
    test = encode_messages(routing_messages("test", args.seed), encoder.encode)
    encode_s = time.perf_counter() - started
    torch.set_num_threads(2)

    hub = SpikingHub(seed=args.seed)
    hub_s = fit(hub, train, HubTraining(epochs=args.epochs), args.seed)
    mlp = MLPRouter(hidden=mlp_width_for(hub.routing_weights()), seed=args.seed)
    mlp_s = fit(mlp, train, HubTraining(epochs=args.epochs), args.seed)

    sweep = {hub.time_steps: hub}
    for steps in (1, 2, 4):
        other = SpikingHub(time_steps=steps, seed=args.seed)
        fit(other, train, HubTraining(epochs=args.sweep_epochs), args.seed)
        sweep[steps] = other

    torch.set_num_threads(1)
    rows = []
    counts = {name: router.operation_counts(test.messages) for name, router in (("spiking", hub), ("mlp", mlp))}
    energies = {name: energy_pj(c) for name, c in counts.items()}
    for name, router, seconds in (("spiking", hub, hub_s), ("mlp", mlp, mlp_s)):
        by_route = per_route_accuracy(router, test)
        c = counts[name]
        rows.append(
            [
                f"{name} ({router.settings()['hidden']} hidden"
                + (f", T={hub.time_steps})" if name == "spiking" else ")"),
                f"{router.routing_weights():,}",
                f"{accuracy(router, test):.2%}",
                *(f"{by_route[r]:.2%}" for r in ROUTES),
                f"{c['macs']:,.0f}",
                f"{c['sops'] + c['neuron_acs']:,.0f}",
                f"{energies[name] / 1e6:.3f}",
                f"{latency_ms(router, test, 1, 300):.3f}",
                f"{latency_ms(router, test, 64, 100):.3f}",
                f"{seconds:.0f}",
            ]
        )
    header = [
        "router",
        "routing weights",
        "accuracy",
        *ROUTES,
        "MACs / msg",
        "ACs / msg",
        "energy µJ / msg",
        "latency ms (b=1)",
        "latency ms (b=64)",
        "train s",
    ]
    c = counts["spiking"]
    fidelity_lines = [
        "| time steps | message read back from its spike trains (mean cosine) | decoded from the hub's code"
        " (mean cosine) | accuracy | encoding spikes / msg | hidden spikes / msg | energy µJ / msg | energy / MLP's |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for steps in (1, 2, 4, 8):
        router = sweep[steps]
        sc = router.operation_counts(test.messages)
        fidelity_lines.append(
            f"| {steps} | {message_fidelity(router, test.messages):.4f} | {fidelity(router, test.messages):.4f} | "
            f"{accuracy(router, test):.2%} | "
            f"{sc['encoding_spikes']:.0f} | {sc['hidden_spikes']:.0f} | {energy_pj(sc) / 1e6:.3f} | "
            f"{energy_pj(sc) / energies['mlp']:.3f} |"
        )
    gap = accuracy(mlp, test) - accuracy(hub, test)
    ratio = energies["spiking"] / energies["mlp"]
    notes = f"""Held-out test set: {len(test.labels):,} messages ({len(train.labels):,} training), wordings unseen in
training (reverie/data/routing.py). Hub: {hub.hidden} leaky integrate-and-fire neurons (beta {hub.beta}), fed by
2 x 769 integrate-and-fire encoding neurons; trained jointly on routing (cross-entropy), decoding
(1 - cosine) and a firing-rate penalty, {args.epochs} epochs (the 1, 2 and 4-step hubs {args.sweep_epochs}).
MLP: 769 -> {mlp.hidden} (ReLU) -> 4, {args.epochs} epochs, cross-entropy.

Goals: accuracy within 1 point of the MLP: gap {gap * 100:+.2f} points ({"met" if gap <= 0.01 else "not met"});
fidelity ≥ 0.95 at ≤ 8 steps: the message read back from the spike trains that carry it, best
{max(message_fidelity(r, test.messages) for r in sweep.values()):.4f} at {min((s for s, r in sweep.items() if message_fidelity(r, test.messages) >= 0.95), default="no")} steps or more
({"met" if max(message_fidelity(r, test.messages) for r in sweep.values()) >= 0.95 else "not met"}); decoded from the hub's
{hub.hidden}-neuron code (a compression, which the router reads), best {max(fidelity(r, test.messages) for r in sweep.values()):.4f}
({"met" if max(fidelity(r, test.messages) for r in sweep.values()) >= 0.95 else "not met"});
hub energy ≤ 1/5 of the MLP's: {ratio:.3f} ({"met" if ratio <= 0.2 else "not met"}).

Fidelity by time steps (test messages): the message as its encoding neurons' spike trains carry it,
read back by rate (count / (gain x T)), and as the hub's hidden code carries it, through the learnt decoder:

{chr(10).join(fidelity_lines)}

Energy: MACs at {MAC_PJ} pJ, accumulates at {AC_PJ} pJ (45 nm CMOS, 32-bit float; Horowitz, ISSCC 2014).
Hub, per message: {c["macs"]:,.0f} MACs (the encoding current, one multiply per float, once since the input
is constant; the hidden neurons' leak each step), {c["sops"]:,.0f} synaptic operations
({c["encoding_spikes"]:.0f} encoding spikes x {hub.hidden} fan-out + {c["hidden_spikes"]:.0f} hidden spikes x 4),
{c["neuron_acs"]:,.0f} neuron-update accumulates (integration of every neuron each step). Firing rates:
encoding {c["encoding_rate"]:.3f}, hidden {c["hidden_rate"]:.3f} spikes per neuron per step. The MLP:
769 x {mlp.hidden} + {mlp.hidden} x 4 MACs (biases and ReLU left out). The decoder is not on the routing path
and not counted. Latency: torch {torch.__version__} on 1 thread, route() with numpy in and
decisions out; the hub steps through time in Python, so on a CPU it is slower than the MLP even
though it does fewer operations: the saving is for event-driven (neuromorphic) hardware.
MiniLM encoding of the {len(set(train.texts)) + len(set(test.texts)):,} texts took {encode_s:.0f} s (not counted above)."""
    write_table(
        "hub",
        "Spiking hub vs same-size MLP router (held-out wordings)",
        "python -m bench.hub",
        header,
        rows,
        notes,
    )


if __name__ == "__main__":
    main()
