"""The fractal network of seed 001, built so that it works: it grows, prunes, learns by a bounded
Hebbian rule, and stays finite at depth 7 and 9 (issue 28).

A `FractalNet` is a VAE encoder, a tree of `FractalNode`s and a linear head. Each node is a
pre-norm residual block (LayerNorm, Linear, GELU, Linear) whose children read the node's output
and are joined back into it:

    z = x + W_out gelu(W_in LN(x))
    y = LN_out(z + sum_i a_i P_i(child_i(z)))       a = softmax(theta + refinement)

What keeps it stable where the seed's version explodes:
- **Mean joins and a norm per node.** The attention weights sum to one, so a node's children add
  a weighted mean, not a sum, and every node ends in a LayerNorm: a node's output has unit scale
  whatever its depth or number of children, so depth adds, it does not multiply.
- **Growth that changes nothing at the moment it happens** (Net2Net's function-preserving growth,
  GradMax's zero fan-out): a new child's fan-in is Xavier-initialised and its fan-out `P_i` is
  zero, so it adds nothing; the softmax's renormalisation is undone by rescaling the existing
  children's fan-outs by a_old / a_new. The output is the same to float precision. Because the
  fan-in is not zero, the fan-out's gradient is not zero, and the child starts learning at once.
- **A bounded Hebbian rule.** After each optimiser step, each node's first layer takes a step of
  Sanger's generalised Hebbian algorithm (Oja's rule for many units):
  dW = eta (y x^T - LT(y y^T) W) on unit-norm inputs. Its decay term keeps the rows near unit norm
  and decorrelated, so the Hebbian part cannot grow weights without bound (the plain rule
  dW = eta y x^T, which the seed's "Hebbian-like updates" are, can: `hebbian="plain"` keeps it for
  the benchmark's comparison).
- The VAE's log-variance is clamped, and everything is Xavier-initialised.

Growth is decided by the node's **output complexity**: the normalised spectral entropy of its
update `u = z - x` over a batch (the entropy of the normalised squared singular values, divided by
its maximum; 0 when the update uses one direction, 1 when it spreads evenly over all). A node whose
update spreads over many directions is doing a lot alone; it gets a child to share the work. Every
`grow_every` steps, the most complex node over `grow_threshold` with room (depth below
`max_depth`, fewer than `max_children` children, fewer than `max_nodes` nodes) grows one child.

**Co-activation.** Each node keeps an exponential moving average of its children's co-activation,
C_ij = EMA(E[s_i s_j]), where s_i is child i's share of the node's output for one input (the norm
of a_i P_i(child_i(z)) over the norm of everything the node adds). The diagonal is how active a
child is; the off-diagonal how often it is active together with a sibling. It refines attention:
refinement_i = strength * maturity_i * (C_ii - max_{j != i} C_ij), bounded in [-strength,
strength], so a child that carries its own share gains weight and one that is only ever active
alongside another (redundant) loses it; a newborn child's maturity ramps from 0 to 1 over
`grow_every` steps, so the refinement never jumps. Children whose attention and activity stay low
for `prune_patience` checks are pruned, and the remaining fan-outs are rescaled so that only the
pruned child's own (small) contribution is lost.

Plain torch; no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from reverie.errors import ReverieError

FORMAT = "reverie-fractal/1"


class FractalStateError(ReverieError):
    """A fractal state file that cannot be loaded (missing, damaged, or not a fractal state)."""

    status = 422


@dataclass
class FractalConfig:
    """The shape of a fractal network and the rules it grows, prunes and learns by."""

    input_dim: int
    """Width of the input vector (384 for a MiniLM question vector)."""
    output_dim: int
    """Width of the head's output."""
    width: int = 64
    """Width of the latent and of every node's input and output."""
    hidden: int = 128
    """Width of each node's inner layer."""
    max_depth: int = 7
    """The deepest a node may be (the root is depth 1)."""
    max_children: int = 2
    """Children a node may have."""
    max_nodes: int = 32
    """Nodes the tree may have in all (it bounds the weights)."""
    start_depth: int = 1
    """The tree starts as a chain this deep (1: the root alone)."""
    grow_threshold: float = 0.5
    """A node grows a child when its output complexity (normalised spectral entropy, 0..1) passes this."""
    grow_every: int = 100
    """Steps between growth and pruning checks; also a newborn child's warm-up."""
    measure_every: int = 10
    """Steps between measures of the output complexity (an SVD per node; the EMA needs no more)."""
    prune_attention: float = 0.25
    """A child is idle when its attention weight is below this fraction of the uniform 1/K ..."""
    prune_activity: float = 0.05
    """... and its mean squared share of the node's output (the co-activation diagonal) below this."""
    prune_patience: int = 3
    """Checks in a row a child must stay idle before it is pruned (0: never prune while training)."""
    coactivation_decay: float = 0.99
    """The EMA decay of the co-activation matrix and the complexity."""
    coactivation_strength: float = 1.0
    """How far co-activation moves an attention logit (at most this much either way)."""
    hebbian: str = "sanger"
    """The Hebbian rule on each node's first layer: "sanger" (bounded), "plain" (y x^T, unbounded), "off"."""
    hebbian_rate: float = 1e-4
    """The Hebbian step size."""
    join: str = "mean"
    """"mean": children joined by their softmax attention; "sum": added up (the seed's way, unstable)."""
    norm: bool = True
    """LayerNorm at each node's input and output (off: the seed's way, unstable)."""
    vae_beta: float = 1e-3
    """Weight of the VAE's KL term in the loss."""

    def __post_init__(self):
        checks = {
            "input_dim": self.input_dim >= 1,
            "output_dim": self.output_dim >= 1,
            "width": self.width >= 2,
            "hidden": self.hidden >= 1,
            "max_depth": self.max_depth >= 1,
            "max_children": self.max_children >= 0,
            "max_nodes": self.max_nodes >= 1,
            "start_depth": 1 <= self.start_depth <= min(self.max_depth, self.max_nodes),
            "grow_threshold": 0.0 <= self.grow_threshold <= 1.0,
            "grow_every": self.grow_every >= 1,
            "measure_every": self.measure_every >= 1,
            "prune_patience": self.prune_patience >= 0,
            "coactivation_decay": 0.0 <= self.coactivation_decay < 1.0,
            "hebbian": self.hebbian in HEBBIAN_RULES,
            "hebbian_rate": self.hebbian_rate >= 0.0,
            "join": self.join in ("mean", "sum"),
            "vae_beta": self.vae_beta >= 0.0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"bad fractal setting(s) {', '.join(bad)}: {self.describe(bad)}")

    def describe(self, names: list[str]) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in names)


HEBBIAN_RULES = ("sanger", "plain", "off")


def _xavier(linear: nn.Linear) -> nn.Linear:
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class ChildLink(nn.Module):
    """How a child's output enters its parent: a fan-out projection (zero at birth) and an attention logit."""

    def __init__(self, width: int):
        super().__init__()
        self.fan_out = nn.Linear(width, width, bias=False)
        nn.init.zeros_(self.fan_out.weight)
        self.logit = nn.Parameter(torch.zeros(()))


class FractalNode(nn.Module):
    coactivation: torch.Tensor
    age: torch.Tensor
    idle: torch.Tensor
    complexity: torch.Tensor

    def __init__(self, config: FractalConfig, depth: int):
        super().__init__()
        self.config = config
        self.depth = depth
        width = config.width
        self.norm_in: nn.Module = nn.LayerNorm(width) if config.norm else nn.Identity()
        self.norm_out: nn.Module = nn.LayerNorm(width) if config.norm else nn.Identity()
        self.w_in = _xavier(nn.Linear(width, config.hidden))
        self.w_out = _xavier(nn.Linear(config.hidden, width))
        self.kids = nn.ModuleList()
        self.links = nn.ModuleList()
        self.register_buffer("coactivation", torch.zeros(0, 0))
        self.register_buffer("age", torch.zeros(0))
        """Steps each child has lived (its maturity is age / grow_every, at most 1)."""
        self.register_buffer("idle", torch.zeros(0))
        """Checks in a row each child has been idle."""
        self.register_buffer("complexity", torch.full((), -1.0))
        """The EMA of the output complexity; -1 until the first recorded pass (which sets it)."""
        self.record = False
        self.measure = True
        """Whether the next recorded pass measures the complexity (FractalNet.after_step sets it)."""
        self.last_input: torch.Tensor | None = None
        self.last_pre: torch.Tensor | None = None

    # -------------------------------------------------------------------- structure

    def child(self, index: int) -> FractalNode:
        return cast(FractalNode, self.kids[index])

    def link(self, index: int) -> ChildLink:
        return cast(ChildLink, self.links[index])

    def nodes(self) -> Iterator[FractalNode]:
        yield self
        for i in range(len(self.kids)):
            yield from self.child(i).nodes()

    def attention(self) -> torch.Tensor:
        """The softmax weights over the children (input-independent; refined by co-activation)."""
        if not len(self.kids):
            return torch.zeros(0)
        logits = torch.stack([self.link(i).logit for i in range(len(self.links))])
        return torch.softmax(logits + self.refinement(), dim=0)

    def refinement(self) -> torch.Tensor:
        count = len(self.kids)
        coact = self.coactivation
        if count < 2:
            return torch.zeros(count, device=coact.device)
        off = coact - torch.diag(torch.diag(coact)) - torch.eye(count, device=coact.device)  # -1 on the diagonal
        together = off.max(dim=1).values.clamp(min=0.0)
        maturity = (self.age / self.config.grow_every).clamp(max=1.0)
        return self.config.coactivation_strength * maturity * (torch.diag(coact) - together)

    def _rescale_fan_outs(self, before: torch.Tensor, keep: list[int]) -> None:
        """After the children changed, scale each kept child's fan-out by a_old / a_new, so that
        every kept child adds what it added before."""
        if self.config.join != "mean":  # a sum join does not weigh its children: nothing to undo
            return
        after = self.attention().detach()
        with torch.no_grad():
            for new_index, old_index in enumerate(keep):
                ratio = before[old_index] / after[new_index].clamp(min=1e-12)
                self.link(new_index).fan_out.weight.mul_(ratio)

    def add_child(self) -> FractalNode:
        before = self.attention().detach()
        count = len(self.kids)
        child = FractalNode(self.config, self.depth + 1).to(self.w_in.weight.device)
        child.record = self.record  # a child born while training is measured from its first pass
        self.kids.append(child)
        self.links.append(ChildLink(self.config.width).to(self.w_in.weight.device))
        coact = torch.zeros(count + 1, count + 1, device=self.coactivation.device)
        coact[:count, :count] = self.coactivation
        self.coactivation = coact
        self.age = torch.cat([self.age, torch.zeros(1, device=self.age.device)])
        self.idle = torch.cat([self.idle, torch.zeros(1, device=self.idle.device)])
        self._rescale_fan_outs(before, list(range(count)))
        return child

    def remove_child(self, index: int) -> None:
        before = self.attention().detach()
        keep = [i for i in range(len(self.kids)) if i != index]
        self.kids = nn.ModuleList([self.kids[i] for i in keep])
        self.links = nn.ModuleList([self.links[i] for i in keep])
        self.coactivation = self.coactivation[keep][:, keep].clone()
        self.age, self.idle = self.age[keep].clone(), self.idle[keep].clone()
        self._rescale_fan_outs(before, keep)

    # -------------------------------------------------------------------- the pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(x)
        pre = self.w_in(h)
        u = self.w_out(F.gelu(pre))
        z = x + u
        if self.record:
            self.last_input, self.last_pre = h.detach(), pre.detach()
        if not len(self.kids):
            if self.record and self.measure:
                self._note_complexity(u)
            return self.norm_out(z)
        weights = self.attention() if self.config.join == "mean" else torch.ones(len(self.kids), device=x.device)
        parts = [weights[i] * self.link(i).fan_out(self.child(i)(z)) for i in range(len(self.kids))]
        added = torch.stack(parts, dim=1)  # (batch, children, width)
        if self.record:
            if self.measure:
                self._note_complexity(u)
            self._note_coactivation(u, added)
        return self.norm_out(z + added.sum(dim=1))

    @torch.no_grad()
    def _note_complexity(self, u: torch.Tensor) -> None:
        now = spectral_entropy(u)
        first = self.complexity < 0
        self.complexity.copy_(now if first else _ema(self.complexity, now, self.config.coactivation_decay))

    @torch.no_grad()
    def _note_coactivation(self, u: torch.Tensor, added: torch.Tensor) -> None:
        norms = added.norm(dim=2)  # (batch, children)
        share = norms / (u.norm(dim=1, keepdim=True) + norms.sum(dim=1, keepdim=True) + 1e-12)
        together = share.T @ share / share.shape[0]
        self.coactivation.copy_(_ema(self.coactivation, together, self.config.coactivation_decay))
        self.age.add_(1.0)


def _ema(old: torch.Tensor, new: torch.Tensor, decay: float) -> torch.Tensor:
    return decay * old + (1.0 - decay) * new


def spectral_entropy(u: torch.Tensor) -> torch.Tensor:
    """The normalised spectral entropy of a batch of vectors (batch, width): 0 when they vary along
    one direction, 1 when evenly along all the batch can show."""
    centred = u.detach().float() - u.detach().float().mean(dim=0, keepdim=True)
    rank = min(centred.shape)
    if rank < 2 or not torch.isfinite(centred).all():  # the SVD refuses NaN; the caller sees the loss
        return torch.zeros((), device=u.device)
    singular = torch.linalg.svdvals(centred)
    power = singular.square()
    total = power.sum()
    if not torch.isfinite(total) or total <= 0:
        return torch.zeros((), device=u.device)
    p = power / total
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
    return (entropy / math.log(rank)).clamp(0.0, 1.0)


@dataclass
class GrowthEvent:
    step: int
    node: str
    """The parent's path ("0" is the root, "0.1" its second child)."""
    kind: str
    """"grow" or "prune"."""
    complexity: float


@dataclass
class TreeStats:
    nodes: int
    depth: int
    children: int
    complexity: float
    """The mean output complexity over the nodes."""
    weights: int


class FractalNet(nn.Module):
    """VAE encoder -> tree of FractalNodes -> linear head. `forward` gives (output, kl)."""

    def __init__(self, config: FractalConfig):
        super().__init__()
        self.config = config
        self.encoder = _xavier(nn.Linear(config.input_dim, 2 * config.width))
        with torch.no_grad():  # the posterior starts narrow (std e^-3), so sampling does not drown the mean
            self.encoder.bias[config.width :].fill_(-6.0)
        self.root = FractalNode(config, depth=1)
        self.head = _xavier(nn.Linear(config.width, config.output_dim))
        self.step = 0
        self.events: list[GrowthEvent] = []
        node = self.root
        for _ in range(config.start_depth - 1):
            node = node.add_child()

    # -------------------------------------------------------------------- the pass

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent (sampled while training, the mean otherwise) and the KL per input."""
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        log_var = log_var.clamp(-10.0, 10.0)
        latent = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=-1)
        return latent, kl

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The root's output (before the head) and the KL per input."""
        latent, kl = self.encode(x)
        return self.root(latent), kl

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, kl = self.features(x)
        return self.head(out), kl

    # -------------------------------------------------------------------- the tree

    def nodes(self) -> list[FractalNode]:
        return list(self.root.nodes())

    def paths(self) -> dict[str, FractalNode]:
        found: dict[str, FractalNode] = {}

        def walk(node: FractalNode, path: str) -> None:
            found[path] = node
            for i in range(len(node.kids)):
                walk(node.child(i), f"{path}.{i}")

        walk(self.root, "0")
        return found

    def stats(self) -> TreeStats:
        nodes = self.nodes()
        return TreeStats(
            nodes=len(nodes),
            depth=max(n.depth for n in nodes),
            children=sum(len(n.kids) for n in nodes),
            complexity=float(torch.stack([n.complexity.clamp(min=0.0) for n in nodes]).mean()),
            weights=sum(p.numel() for p in self.parameters()),
        )

    def set_recording(self, on: bool) -> None:
        for node in self.nodes():
            node.record = on
            if not on:
                node.last_input = node.last_pre = None

    def grow(self) -> GrowthEvent | None:
        """Give the most complex node with room one child, if its complexity passes the threshold."""
        config = self.config
        nodes = self.paths()
        if len(nodes) >= config.max_nodes:
            return None
        room = [
            (float(node.complexity), path)
            for path, node in nodes.items()
            if node.depth < config.max_depth and len(node.kids) < config.max_children
        ]
        room = [(c, path) for c, path in room if c > config.grow_threshold]
        if not room:
            return None
        complexity, path = max(room, key=lambda item: (item[0], -len(item[1])))
        nodes[path].add_child()
        event = GrowthEvent(self.step, path, "grow", complexity)
        self.events.append(event)
        return event

    def idle_children(self) -> list[tuple[str, int]]:
        """(parent path, child index) of every child whose attention and activity are low now."""
        config, found = self.config, []
        for path, node in self.paths().items():
            count = len(node.kids)
            if not count:
                continue
            weights = node.attention().detach()
            activity = torch.diag(node.coactivation)
            mature = node.age >= config.grow_every
            for i in range(count):
                if mature[i] and weights[i] < config.prune_attention / count and activity[i] < config.prune_activity:
                    found.append((path, i))
        return found

    def prune_idle(self) -> list[GrowthEvent]:
        """Count each child's idle checks; prune those idle for `prune_patience` checks in a row."""
        if not self.config.prune_patience:
            return []
        idle = set(self.idle_children())
        events = []
        for path, node in list(self.paths().items()):
            for i in range(len(node.kids)):
                node.idle[i] = node.idle[i] + 1 if (path, i) in idle else 0
            for i in reversed(range(len(node.kids))):
                if node.idle[i] >= self.config.prune_patience:
                    events.append(GrowthEvent(self.step, path, "prune", float(node.complexity)))
                    node.remove_child(i)
        self.events += events
        return events

    def prune_weakest(self, fraction: float) -> int:
        """Prune `fraction` of the children, one leaf at a time, each time the leaf that carries
        the least of its parent's output (attention times the square root of its activity): a
        subtree goes leaf by leaf, so no more than asked is removed. Returns how many went."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
        target = int(math.ceil(fraction * self.stats().children))
        for _ in range(target):
            leaves = []
            for path, node in self.paths().items():
                weights = node.attention().detach()
                activity = torch.diag(node.coactivation).clamp(min=0.0)
                for i in range(len(node.kids)):
                    if not len(node.child(i).kids):
                        leaves.append((float(weights[i] * activity[i].sqrt()), path, i, node))
            score, path, index, parent = min(leaves, key=lambda item: item[:3])
            parent.remove_child(index)
            self.events.append(GrowthEvent(self.step, path, "prune", float(parent.complexity)))
        return target

    # -------------------------------------------------------------------- Hebbian

    @torch.no_grad()
    def hebbian_step(self) -> None:
        """One Hebbian step on each node's first layer, from the inputs of the last recorded pass."""
        rule, rate = self.config.hebbian, self.config.hebbian_rate
        if rule == "off" or rate == 0:
            return
        for node in self.nodes():
            if node.last_input is None or node.last_pre is None:
                continue
            x = node.last_input
            weight = node.w_in.weight
            if rule == "sanger":
                x = x / (x.norm(dim=1, keepdim=True) + 1e-12)  # unit inputs: Oja's bound holds for rate < 1
                y = x @ weight.T
                batch = x.shape[0]
                delta = (y.T @ x - torch.tril(y.T @ y) @ weight) / batch
            else:
                y = node.last_pre
                delta = y.T @ x / x.shape[0]
            weight.add_(rate * delta)

    # -------------------------------------------------------------------- one step of training

    def after_step(self, optimizer: torch.optim.Optimizer | None = None) -> list[GrowthEvent]:
        """What follows each optimiser step: the Hebbian step, then every `grow_every` steps the
        growth and pruning checks. Returns the structural changes; the caller rebuilds its
        optimiser over `parameters()` when there are any (see `rebuild_optimizer`)."""
        self.hebbian_step()
        self.step += 1
        measure = self.step % self.config.measure_every == 0
        for node in self.nodes():
            node.measure = measure
        events: list[GrowthEvent] = []
        if self.step % self.config.grow_every == 0:
            events += self.prune_idle()
            grown = self.grow()
            if grown is not None:
                events.append(grown)
        return events

    def card(self) -> dict[str, Any]:
        return {"format": FORMAT, "config": asdict(self.config), "tree": self.shape(), "step": self.step}

    def shape(self) -> dict[str, int]:
        """Each node's path and its number of children: enough to rebuild the tree."""
        return {path: len(node.kids) for path, node in self.paths().items()}


def rebuild_optimizer(optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser over `params` after the tree changed: the parameters it had keep their state
    (Adam's moments), new ones start fresh, those pruned are dropped. Changed in place; returned."""
    if len(optimizer.param_groups) != 1:
        raise ValueError("a fractal network's optimiser has one parameter group")
    keep = {id(p) for p in params}
    for gone in [p for p in optimizer.state if id(p) not in keep]:
        del optimizer.state[gone]
    optimizer.param_groups[0]["params"] = list(params)
    return optimizer


def config_from(values: dict[str, Any]) -> FractalConfig:
    known = {f.name for f in fields(FractalConfig)}
    unknown = set(values) - known
    if unknown:
        raise FractalStateError(f"unknown fractal setting(s): {', '.join(sorted(unknown))}")
    return FractalConfig(**values)


def build_from_shape(config: FractalConfig, shape: dict[str, int]) -> FractalNet:
    """An untrained net with the tree `shape` describes (its weights to be loaded)."""
    net = FractalNet(FractalConfig(**{**asdict(config), "start_depth": 1}))
    net.config = config
    for path in sorted(shape, key=lambda p: (p.count("."), [int(x) for x in p.split(".")])):
        node = net.paths().get(path)
        if node is None:
            raise FractalStateError(f"the tree names node {path} under a parent it does not hold")
        for _ in range(shape[path]):
            node.add_child()
    return net
