"""The hub: the network that reads each module's message and routes it (issue 27, part 3).

A message is what the text encoder and the conversation hand the hub for one turn:
concat(question vector 384, has_image 1, previous question's vector 384) = 769 floats. The hub
sends it on one of ROUTES: "graph" (a self-contained question for the knowledge graph),
"follow-up" (a question that leans on the previous turn, for the memory), "image" (a question about
an attached image) or "small-talk" (greetings, thanks, questions about the assistant).

Two routers, one contract (`Router`):

- `SpikingHub`, a leaky integrate-and-fire network (snntorch). The message is first turned into
  spike trains by integrate-and-fire encoding neurons, two per float (one for its positive part,
  one for its negative part, each driven by a learnt per-float gain): a rate code, so the network
  after them only ever adds weights where a spike arrives (accumulates, not multiply-accumulates,
  which is where the energy saving of a spiking network comes from). A layer of synapses carries
  those spikes to `hidden` leaky neurons, whose spike trains (T, n, hidden) are the hub's code of
  the message. Two readouts listen to the code: the routing head (a linear layer over the spike
  counts) and a decoder that rebuilds the message from the spikes (a linear layer over a learnt
  weighting of the time steps). Both are trained together, through the spikes with a surrogate
  gradient: cross-entropy on the route, plus (1 - cosine) between the message and its
  reconstruction, plus a small penalty on the firing rate (fewer spikes, less energy).
- `MLPRouter`, the same-size multilayer perceptron (769 -> hidden -> 4, ReLU): the baseline the hub
  is measured against (bench/hub.py) and the fallback where spikes are not wanted.

`train_router` fits either one on the training messages of reverie.data.routing (encoded by the
caller's text encoder) and measures it on the held-out wordings; `save_router` / `load_router`
keep it as safetensors plus a JSON card; `router_for_home` is what the pipeline calls.

Energy: `operation_counts` counts, from the real spike trains, the synaptic operations (each spike
times the fan-out it drives) and the multiply-accumulates that remain; `energy_pj` prices them at
45 nm CMOS figures (Horowitz, ISSCC 2014), as SNN papers do.

Plain torch, snntorch and numpy; no Ray.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from reverie.atomic import replace_folder
from reverie.errors import ReverieError

ROUTES: tuple[str, ...] = ("graph", "follow-up", "image", "small-talk")
MESSAGE_DIM = 384
"""The width of a text vector (reverie.encoders.text.text_dim() for the bundled MiniLM)."""
INPUT_DIM = 2 * MESSAGE_DIM + 1
"""A message: question vector, has_image, previous question's vector."""

HUB_HIDDEN = 256
"""The hub's default number of hidden (code) neurons."""

FORMAT = "reverie-router"
FORMAT_VERSION = 1
WEIGHTS_FILE = "router.safetensors"
CARD_FILE = "router.json"

MAC_PJ = 4.6
"""Energy of one 32-bit float multiply-accumulate at 45 nm: 3.7 pJ multiply + 0.9 pJ add
(Horowitz, "Computing's energy problem", ISSCC 2014)."""
AC_PJ = 0.9
"""Energy of one 32-bit float accumulate (add) at 45 nm (Horowitz, ISSCC 2014): what a spike
arriving at a synapse costs."""


class RouterError(ReverieError):
    """A router cannot be read or made: a missing or damaged folder, an unknown kind."""


@dataclass(frozen=True)
class RouteDecision:
    """Where one message goes, with the router's probability of each route."""

    route: str
    probabilities: dict[str, float]
    router: str  # "spiking" or "mlp"


class Router(Protocol):
    """What the pipeline needs of a router; `SpikingHub` and `MLPRouter` both are one."""

    name: str

    def route(
        self, question_vecs: np.ndarray, has_image: np.ndarray, memory_vecs: np.ndarray
    ) -> list[RouteDecision]: ...


@dataclass(frozen=True)
class HubTraining:
    """How a router is fitted: Adam on mini-batches, the learning rate on a cosine."""

    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    reconstruction_weight: float = 1.0
    """Weight of (1 - cosine) between a message and its decoding (the hub only): the code must keep the message."""
    rate_penalty: float = 0.05
    """Weight of the mean firing rate (encoding and hidden neurons; the hub only): fewer spikes, less energy."""


# --------------------------------------------------------------------------------- messages


def messages_tensor(question_vecs: np.ndarray, has_image: np.ndarray, memory_vecs: np.ndarray) -> torch.Tensor:
    """The (n, 769) float32 messages: question vector, has_image (0/1), previous question's vector."""
    question = np.asarray(question_vecs, dtype=np.float32)
    memory = np.asarray(memory_vecs, dtype=np.float32)
    image = np.asarray(has_image, dtype=np.float32).reshape(-1, 1)
    if question.ndim != 2 or question.shape[1] != MESSAGE_DIM or memory.shape != question.shape:
        raise ValueError(
            f"question_vecs and memory_vecs must both be (n, {MESSAGE_DIM}); got {question.shape} and {memory.shape}"
        )
    if image.shape[0] != question.shape[0]:
        raise ValueError(f"has_image must have one flag per message; got {image.shape[0]} for {question.shape[0]}")
    return torch.from_numpy(np.concatenate([question, image, memory], axis=1))


def _decisions(logits: torch.Tensor, router: str) -> list[RouteDecision]:
    probabilities = torch.softmax(logits.double(), dim=-1).numpy()
    out = []
    for row in probabilities:
        best = int(np.argmax(row))
        out.append(RouteDecision(ROUTES[best], {r: float(p) for r, p in zip(ROUTES, row, strict=True)}, router))
    return out


def weight_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------ the routers


class SpikingHub(nn.Module):
    """The leaky integrate-and-fire hub: message -> encoding spikes -> hidden spikes (the code) ->
    route, and code -> message again. `time_steps` (1..8) is how long a message is presented;
    `hidden` the number of neurons of the code; `beta` the hidden neurons' leak per step."""

    name = "spiking"

    def __init__(self, hidden: int = HUB_HIDDEN, time_steps: int = 8, beta: float = 0.9, seed: int = 0):
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        if not 1 <= time_steps <= 8:
            raise ValueError(f"time_steps must be in 1..8; got {time_steps}")
        self.hidden = int(hidden)
        self.time_steps = int(time_steps)
        self.beta = float(beta)
        self.seed = int(seed)
        torch.manual_seed(seed)
        # Per-step current gain of each float's encoding neurons: a |value| of 0.05 (a typical MiniLM
        # coordinate) makes ~2 spikes over the whole presentation, whatever the number of steps.
        # Fixed, not learnt: the gain x T levels are the resolution of the message's spike code (a
        # learnt gain traded it for fewer spikes: fidelity fell to 0.94 with energy far under its goal).
        log_gain = torch.full((INPUT_DIM,), math.log(40.0 / time_steps))
        # the image flag is 0 or 1, not a coordinate of a unit vector: a gain that spends the whole
        # train on 1 (a neuron fires at most once a step, so a larger one would clip it)
        log_gain[MESSAGE_DIM] = 0.0
        self.log_gain: torch.Tensor
        self.register_buffer("log_gain", log_gain)
        grad = surrogate.fast_sigmoid(slope=25)
        # beta 1: integrate-and-fire, a pure rate code of the constant input current
        self.encoding_neurons = snn.Leaky(beta=1.0, threshold=1.0, spike_grad=grad, reset_mechanism="subtract")
        self.synapses = nn.Linear(2 * INPUT_DIM, hidden)
        self.hidden_neurons = snn.Leaky(beta=beta, threshold=1.0, spike_grad=grad, reset_mechanism="subtract")
        self.head = nn.Linear(hidden, len(ROUTES))
        self.step_weights = nn.Parameter(torch.full((time_steps,), 1.0 / time_steps))
        self.decoder = nn.Linear(hidden, INPUT_DIM)

    # the spike trains

    def spike_trains(self, messages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoding spikes (T, n, 2 * 769), hidden spikes (T, n, hidden)) of (n, 769) messages."""
        gain = torch.exp(self.log_gain)
        current = torch.cat([messages * gain, -messages * gain], dim=1)  # computed once: the input is constant
        encoding_mem = torch.zeros_like(current)
        hidden_mem = torch.zeros(messages.shape[0], self.hidden, dtype=messages.dtype)
        encoding_spikes, hidden_spikes = [], []
        for _ in range(self.time_steps):
            encoding, encoding_mem = self.encoding_neurons(current, encoding_mem)
            spikes, hidden_mem = self.hidden_neurons(self.synapses(encoding), hidden_mem)
            encoding_spikes.append(encoding)
            hidden_spikes.append(spikes)
        return torch.stack(encoding_spikes), torch.stack(hidden_spikes)

    def encode_spikes(self, messages: torch.Tensor) -> torch.Tensor:
        """The hub's code of (n, 769) messages: binary spike trains (T, n, hidden)."""
        return self.spike_trains(messages)[1]

    def decode(self, spikes: torch.Tensor) -> torch.Tensor:
        """The (n, 769) messages rebuilt from their spike trains (T, n, hidden)."""
        if spikes.shape[0] != self.time_steps:
            raise ValueError(f"this hub decodes {self.time_steps} time steps; got {spikes.shape[0]}")
        return self.decoder(torch.einsum("t,tnh->nh", self.step_weights, spikes))

    def read_message(self, encoding_spikes: torch.Tensor) -> torch.Tensor:
        """The (n, 769) messages read back from their encoding spike trains (T, n, 2 * 769), by rate:
        an integrate-and-fire neuron with subtractive reset fires floor(current * T) times, so the
        count over the steps, divided by the gain and T, gives the value back to within one step
        (the middle of the step is taken; a silent pair of neurons reads 0)."""
        steps = encoding_spikes.shape[0]
        counts = encoding_spikes.sum(0)
        scale = torch.exp(self.log_gain) * steps
        middle = torch.where(counts > 0, counts + 0.5, counts)
        return (middle[:, :INPUT_DIM] - middle[:, INPUT_DIM:]) / scale

    def logits(self, spikes: torch.Tensor) -> torch.Tensor:
        """Route logits from the hidden spike counts: each spike adds its 4 head weights."""
        return self.head(spikes.sum(0))

    def forward(self, messages: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_spikes(messages))

    def route(self, question_vecs: np.ndarray, has_image: np.ndarray, memory_vecs: np.ndarray) -> list[RouteDecision]:
        with torch.inference_mode():
            return _decisions(self(messages_tensor(question_vecs, has_image, memory_vecs)), self.name)

    # size and energy

    def routing_weights(self) -> int:
        """The weights a route decision uses (all but the decoder's)."""
        return weight_count(self) - weight_count(self.decoder) - self.step_weights.numel()

    def settings(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "time_steps": self.time_steps, "beta": self.beta, "seed": self.seed}

    def operation_counts(self, messages: torch.Tensor) -> dict[str, float]:
        """Operations per message of routing `messages`, counted from their real spike trains:

        - macs: the encoding current (one multiply per float, once: the input is constant over the
          steps) and the hidden neurons' leak (beta * membrane, each neuron each step);
        - sops: synaptic operations, accumulates: each encoding spike adds its `hidden` synapse
          weights, each hidden spike its 4 head weights;
        - neuron_acs: the other accumulates: the encoding neurons integrating their current and the
          hidden neurons their bias, each neuron each step, and the head's bias once.
        """
        with torch.inference_mode():
            encoding, hidden = self.spike_trains(messages)
        n = messages.shape[0]
        steps = self.time_steps
        return {
            "macs": INPUT_DIM + self.hidden * steps,
            "sops": float(encoding.sum()) / n * self.hidden + float(hidden.sum()) / n * len(ROUTES),
            "neuron_acs": 2 * INPUT_DIM * steps + self.hidden * steps + len(ROUTES),
            "encoding_rate": float(encoding.mean()),
            "hidden_rate": float(hidden.mean()),
            "encoding_spikes": float(encoding.sum()) / n,
            "hidden_spikes": float(hidden.sum()) / n,
        }


class MLPRouter(nn.Module):
    """The baseline and fallback: 769 -> hidden (ReLU) -> 4. The default hidden width gives it the
    hub's number of routing weights (within 1%)."""

    name = "mlp"

    def __init__(self, hidden: int | None = None, seed: int = 0):
        super().__init__()
        if hidden is None:
            hidden = mlp_width_for(hub_routing_weights(HUB_HIDDEN))
        self.hidden = int(hidden)
        self.seed = int(seed)
        torch.manual_seed(seed)
        self.layers = nn.Sequential(nn.Linear(INPUT_DIM, hidden), nn.ReLU(), nn.Linear(hidden, len(ROUTES)))

    def forward(self, messages: torch.Tensor) -> torch.Tensor:
        return self.layers(messages)

    def route(self, question_vecs: np.ndarray, has_image: np.ndarray, memory_vecs: np.ndarray) -> list[RouteDecision]:
        with torch.inference_mode():
            return _decisions(self(messages_tensor(question_vecs, has_image, memory_vecs)), self.name)

    def routing_weights(self) -> int:
        return weight_count(self)

    def settings(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "seed": self.seed}

    def operation_counts(self, messages: torch.Tensor) -> dict[str, float]:
        """Multiply-accumulates per message (the biases and ReLU, a few hundred adds, are left out)."""
        return {"macs": INPUT_DIM * self.hidden + self.hidden * len(ROUTES), "sops": 0.0, "neuron_acs": 0.0}


def hub_routing_weights(hidden: int) -> int:
    """SpikingHub(hidden).routing_weights() without building one: gains, synapses, head."""
    return INPUT_DIM + 2 * INPUT_DIM * hidden + hidden + len(ROUTES) * hidden + len(ROUTES)


def mlp_width_for(weights: int) -> int:
    """The MLP hidden width whose weight count is nearest `weights`."""
    return max(1, round((weights - len(ROUTES)) / (INPUT_DIM + 1 + len(ROUTES))))


def energy_pj(counts: dict[str, float]) -> float:
    """Energy of one message's operations: MACs at MAC_PJ, accumulates (SOPs and neuron updates) at AC_PJ."""
    return counts["macs"] * MAC_PJ + (counts["sops"] + counts["neuron_acs"]) * AC_PJ


ROUTERS: dict[str, type] = {"spiking": SpikingHub, "mlp": MLPRouter}


def make_router(name: str, **kwargs) -> Router:
    """An untrained router of kind `name` (a key of ROUTERS)."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}: choose one of {', '.join(ROUTERS)}")
    return ROUTERS[name](**kwargs)


# --------------------------------------------------------------------------------- training


@dataclass
class EncodedMessages:
    """Routing messages as the routers read them: (n, 769) messages and (n,) route indices."""

    messages: torch.Tensor
    labels: torch.Tensor
    texts: list[str] = field(default_factory=list)


def encode_messages(messages, encode: Callable[[list[str]], np.ndarray]) -> EncodedMessages:
    """reverie.data.routing messages as tensors; each distinct text is encoded once."""
    texts = sorted({m.text for m in messages} | {m.previous for m in messages if m.previous is not None})
    vectors = np.asarray(encode(texts), dtype=np.float32)
    index = {text: i for i, text in enumerate(texts)}
    zeros = np.zeros(vectors.shape[1], dtype=np.float32)
    question = np.stack([vectors[index[m.text]] for m in messages])
    memory = np.stack([vectors[index[m.previous]] if m.previous is not None else zeros for m in messages])
    image = np.array([m.has_image for m in messages])
    labels = torch.tensor([ROUTES.index(m.route) for m in messages])
    return EncodedMessages(messages_tensor(question, image, memory), labels, [m.text for m in messages])


def accuracy(router, data: EncodedMessages) -> float:
    with torch.inference_mode():
        return float((router(data.messages).argmax(-1) == data.labels).float().mean())


def message_fidelity(hub: SpikingHub, messages: torch.Tensor) -> float:
    """Mean cosine between messages and what is read back from the spike trains that carry them
    (the encoding neurons' counts): how faithfully a message travels as spikes."""
    with torch.inference_mode():
        rebuilt = hub.read_message(hub.spike_trains(messages)[0])
        return float(torch.nn.functional.cosine_similarity(rebuilt, messages, dim=-1).mean())


def fidelity(hub: SpikingHub, messages: torch.Tensor) -> float:
    """Mean cosine between messages and what the hub's decoder rebuilds from their spike trains."""
    with torch.inference_mode():
        rebuilt = hub.decode(hub.encode_spikes(messages))
        return float(torch.nn.functional.cosine_similarity(rebuilt, messages, dim=-1).mean())


def fit(
    router, train: EncodedMessages, training: HubTraining = HubTraining(), seed: int = 0, progress: bool = False
) -> float:
    """Fit `router` in place on `train`; returns the seconds it took. The hub learns routing,
    reconstruction and sparse firing together (HubTraining says how much of each)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(router.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)
    n = train.messages.shape[0]
    batches_per_epoch = math.ceil(n / training.batch_size)
    total = training.epochs * batches_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    spiking = isinstance(router, SpikingHub)
    router.train()
    for _ in tqdm(range(training.epochs), desc=f"{router.name} router", disable=not progress, leave=False):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, training.batch_size):
            batch = order[start : start + training.batch_size]
            messages, labels = train.messages[batch], train.labels[batch]
            if spiking:
                _, hidden = router.spike_trains(messages)
                loss = nn.functional.cross_entropy(router.logits(hidden), labels)
                rebuilt = router.decode(hidden)
                cosine = nn.functional.cosine_similarity(rebuilt, messages, dim=-1).mean()
                loss = loss + training.reconstruction_weight * (1 - cosine)
                loss = loss + training.rate_penalty * hidden.mean()  # the code's rate; the encoding's is fixed
            else:
                loss = nn.functional.cross_entropy(router(messages), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    router.eval()
    return time.perf_counter() - started


def train_router(
    name: str,
    encode: Callable[[list[str]], np.ndarray],
    seed: int = 0,
    epochs: int = HubTraining.epochs,
    progress: bool = False,
    per_route: int | None = None,
    **router_options: Any,
) -> Router:
    """A router of kind `name` trained on reverie.data.routing's training messages (encoded with
    `encode`, e.g. reverie.encoders.TextEncoder().encode) and measured on its held-out wordings;
    the measure lands on its `card`. `per_route`: train and measure on the first so many messages
    of each route only (a quick fit, as the tests do). `router_options` go to the router (hidden,
    time_steps, ...). About 10 s of encoding and 30-60 s of training on 2 cores."""
    from reverie.data.routing import routing_messages

    router = make_router(name, seed=seed, **router_options)
    train = encode_messages(_first_per_route(routing_messages("train", seed), per_route), encode)
    test = encode_messages(_first_per_route(routing_messages("test", seed), per_route), encode)
    seconds = fit(router, train, HubTraining(epochs=epochs), seed, progress)
    router.card = _card(router, accuracy(router, test), seconds, epochs)  # type: ignore[attr-defined]
    if isinstance(router, SpikingHub):
        router.card["held_out_fidelity"] = fidelity(router, test.messages)
        router.card["held_out_message_fidelity"] = message_fidelity(router, test.messages)
    return router


def _first_per_route(messages: list, per_route: int | None) -> list:
    if per_route is None:
        return messages
    taken: dict[str, int] = {}
    out = []
    for message in messages:
        if taken.get(message.route, 0) < per_route:
            taken[message.route] = taken.get(message.route, 0) + 1
            out.append(message)
    return out


def _card(router, held_out_accuracy: float, seconds: float, epochs: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": router.name,
        "routes": list(ROUTES),
        "input_dim": INPUT_DIM,
        "settings": router.settings(),
        "routing_weights": router.routing_weights(),
        "weights": weight_count(router),
        "time_steps": getattr(router, "time_steps", None),
        "held_out_accuracy": held_out_accuracy,
        "training_seconds": round(seconds, 2),
        "epochs": epochs,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------- saving, loading


def save_router(router, folder: Path) -> None:
    """The router as `folder`/router.safetensors and its card router.json, written into a staging
    folder beside `folder` and renamed into place, so a reader sees the old router or the new one."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    card = dict(getattr(router, "card", None) or _card(router, float("nan"), 0.0, 0))
    card.update(name=router.name, settings=router.settings(), routing_weights=router.routing_weights())
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is private; a home's folders are not
        state = {key: value.detach().contiguous() for key, value in router.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_card(folder: Path) -> dict[str, Any]:
    """A saved router's card; RouterError when it is missing or not a router's."""
    path = Path(folder) / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RouterError(f"no router in {folder}: its card {CARD_FILE} is missing") from None
    except (OSError, ValueError) as exc:
        raise RouterError(f"the router card {path} is unreadable: {exc}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise RouterError(f"{path} is not a Reverie router card")
    if card.get("version") != FORMAT_VERSION:
        raise RouterError(f"{path} is router format {card.get('version')}; this Reverie reads {FORMAT_VERSION}")
    if card.get("name") not in ROUTERS:
        raise RouterError(f"{path} names router {card.get('name')!r}; known: {', '.join(ROUTERS)}")
    return card


def load_router(folder: Path) -> Router:
    """The router saved in `folder`, in eval mode; RouterError (a ReverieError) when the folder is
    missing, or its card or weights are damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card = read_card(folder)
    try:
        router = ROUTERS[card["name"]](**card.get("settings", {}))
    except (TypeError, ValueError) as exc:
        raise RouterError(f"the router card in {folder} has bad settings: {exc}") from None
    path = Path(folder) / WEIGHTS_FILE
    try:
        state = load_file(str(path))
        router.load_state_dict(state, strict=True)
    except FileNotFoundError:
        raise RouterError(f"the router in {folder} has no weights: {WEIGHTS_FILE} is missing") from None
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise RouterError(f"the router weights {path} are damaged: {str(exc).splitlines()[0]}") from None
    router.card = card
    return router.eval()


SHIPPED = Path(__file__).parent / "weights"
"""The routers Reverie ships (`reverie train hub --router NAME --out reverie/models/weights/hub-NAME`)."""


def shipped_router(name: str) -> Path:
    return SHIPPED / f"hub-{name}"


def router_for_home(folder: Path, name: str, encode: Callable[[list[str]], np.ndarray]) -> Router:
    """The router of kind `name` saved in `folder` (`reverie train hub`), else the one Reverie
    ships; only when neither loads, a newly trained one (a minute), saved there for next time."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}: choose one of {', '.join(ROUTERS)}")
    for saved in (folder, shipped_router(name)):
        try:
            if read_card(saved)["name"] == name:
                return load_router(saved)
        except RouterError:
            pass
    router = train_router(name, encode)
    save_router(router, folder)
    return router
