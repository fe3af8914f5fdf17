"""`reverie train clip`: fit an image tower on renders of the built-in world, against MiniLM locked.

Each rendered entity (object, material, property, result) is drawn many times (reverie/data/render/)
and captioned from the world's facts. The text side is MiniLM, frozen, so its vectors of the
captions and of every entity's text (the vectors the Qdrant entity collection holds) are computed
once. The loss is CLIP's contrastive loss twice over: against every entity's text (the link a
question's image will get), and against every caption, an image's target spread over its
entity's captions (a few hundred texts as the negatives, so no large batch is needed). Held-out renders (backgrounds, poses and colours never trained on) measure it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reverie.encoders.image_tower import Codebook, ImageConfig, ImageTokenizer, TowerMeta, preprocess
from reverie.errors import ReverieError

# Learning rates that converge in minutes on CPU (ViTs want a smaller one).
LEARNING_RATES = {"clip": 1e-3, "resnet": 2e-3, "lite": 2e-3}
AUGMENTS = ("basic", "strong")
# With a time budget and no epoch count the clock ends the run: a cap no budget reaches.
UNCAPPED_EPOCHS = 10_000
# The calibrated link temperature is searched within these scales (cosines times s).
LINK_SCALE_RANGE = (0.1, 1000.0)


@dataclass
class ClipTrainConfig:
    """Settings of one `reverie train clip` run."""

    backbone: str = "lite"  # which image tower (encoders/image_tower.py BACKBONES)
    image_size: int = 64  # render and input side in pixels
    renders_per_entity: int = 12  # training renders of each entity per epoch
    fresh_renders: bool = (
        True  # draw new renders every epoch (new poses, colours, backgrounds), not the same ones again
    )
    # passes over the renders, at most; None: 40, or with `minutes` as many as the clock allows
    epochs: int | None = None
    minutes: float | None = None  # stop after this many minutes of training, whatever the epoch
    batch_size: int = 64
    learning_rate: float | None = None  # None: the backbone's default (LEARNING_RATES)
    weight_decay: float = 0.05
    caption_weight: float = 0.5  # the captions' contrastive loss beside the link loss (image vs every entity's text)
    views: int = 1  # augmented views of each render in one batch (repeated augmentation: half the renders per step)
    augment: str = "basic"  # "basic": pose, flip, brightness, noise; "strong": also hue, saturation and blur
    margin: float = 0.1  # subtracted from the true entity's cosine in the link loss, so look-alikes are pushed apart
    supcon_weight: float = 0.0  # image-to-image loss: views of one entity together, other entities apart
    ema: float | None = None  # decay of the weights' moving average the tower keeps (None: the last weights)
    label_smoothing: float = 0.0
    flip_mean: bool = True  # the trained tower's vector of an image: the mean of its and its mirror's (ImageConfig)
    codebook_size: int = 64  # image tokens (k-means centroids over the training renders' vectors)
    held_out_per_entity: int = 2  # held-out renders per entity for the report
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs is None:
            self.epochs = 40 if self.minutes is None else UNCAPPED_EPOCHS
        for name in (
            "image_size",
            "renders_per_entity",
            "epochs",
            "batch_size",
            "views",
            "codebook_size",
            "held_out_per_entity",
        ):
            if getattr(self, name) < 1:
                raise ReverieError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.minutes is not None and self.minutes <= 0:
            raise ReverieError(f"minutes must be positive, not {self.minutes}")
        if self.batch_size % self.views:
            raise ReverieError(f"batch-size {self.batch_size} must be a multiple of views ({self.views})")
        if self.augment not in AUGMENTS:
            raise ReverieError(f"unknown augment {self.augment!r}; choose one of {', '.join(AUGMENTS)}")
        if not 0 <= self.margin < 1:
            raise ReverieError(f"margin must be within [0, 1), not {self.margin}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ReverieError(f"ema must be within (0, 1), not {self.ema}")
        if not 0 <= self.label_smoothing < 1:
            raise ReverieError(f"label_smoothing must be within [0, 1), not {self.label_smoothing}")


@dataclass
class WorldTexts:
    """MiniLM's vectors of the world: every entity's text (the linking targets) and the captions."""

    entity_names: list[str]
    entity_vecs: np.ndarray  # [entities, 384]: what the Qdrant entity collection holds
    caption_vecs: np.ndarray  # [texts, 384]: captions and entity texts of the rendered entities
    positives: dict[str, list[int]]  # rendered entity -> its rows of caption_vecs

    @classmethod
    def encode(cls, text_encoder) -> "WorldTexts":
        from reverie.data.render import captions, rendered_entities
        from reverie.data.world import build_world
        from reverie.encoders.text import entity_text

        entities, _ = build_world()
        texts_of = {e.name: entity_text(e) for e in entities}
        caption_texts: list[str] = []
        positives: dict[str, list[int]] = {}
        for name, caps in captions().items():
            rows = list(dict.fromkeys([texts_of[name], *caps]))
            positives[name] = list(range(len(caption_texts), len(caption_texts) + len(rows)))
            caption_texts += rows
        missing = {name for name, _ in rendered_entities()} - positives.keys()
        if missing:
            raise ReverieError(f"rendered entities without captions: {sorted(missing)[:5]}")
        return cls(
            entity_names=[e.name for e in entities],
            entity_vecs=text_encoder.encode([texts_of[e.name] for e in entities]),
            caption_vecs=text_encoder.encode(caption_texts),
            positives=positives,
        )


def retrieval(
    image_vecs: np.ndarray, names: list[str], entity_names: list[str], entity_vecs: np.ndarray, ks=(1, 5)
) -> dict[str, float]:
    """Top-k accuracy of image -> entity among every entity of the graph (cosine, as linking does)."""
    index = {n: i for i, n in enumerate(entity_names)}
    truth = np.array([index[n] for n in names])
    scores = image_vecs @ entity_vecs.T
    rank = (scores > scores[np.arange(len(truth)), truth][:, None]).sum(1)
    return {f"top{k}": float((rank < k).mean()) for k in ks}


def link_nll(scale: float, scores: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log-likelihood of the true entity under softmax(scale * cosine) over every entity."""
    logits = scale * scores.astype(np.float64)
    top = logits.max(1)
    log_z = top + np.log(np.exp(logits - top[:, None]).sum(1))
    return float((log_z - logits[np.arange(len(truth)), truth]).mean())


def fit_link_scale(image_vecs: np.ndarray, names: list[str], entity_names: list[str], entity_vecs: np.ndarray) -> float:
    """The scale s that makes softmax(s * cosine(image, every entity)) a calibrated link probability:
    the one minimising the true entities' negative log-likelihood (a golden-section search over log s;
    the NLL is convex in s, so it has one minimum)."""
    if len(names) == 0 or len(names) != len(image_vecs):
        raise ReverieError(
            f"fitting the link scale needs one name per image vector ({len(image_vecs)} vectors, {len(names)} names)"
        )
    index = {n: i for i, n in enumerate(entity_names)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise ReverieError(f"images of entities outside the candidates: {unknown[:5]}")
    truth = np.array([index[n] for n in names])
    scores = np.asarray(image_vecs, np.float64) @ np.asarray(entity_vecs, np.float64).T
    lo, hi = (math.log(s) for s in LINK_SCALE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = link_nll(math.exp(a), scores, truth), link_nll(math.exp(b), scores, truth)
    for _ in range(60):  # the bracket shrinks to 0.618^60 of its log width: far below any useful precision
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = link_nll(math.exp(a), scores, truth)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = link_nll(math.exp(b), scores, truth)
    return math.exp((lo + hi) / 2)


def _augment(batch, generator, strong: bool = True):
    """Generic variety on top of the renders: a random rotation, scale and shift, a horizontal flip,
    brightness and contrast jitter, and pixel noise; `strong` adds a wider rotation, hue and
    saturation jitter and a random blur (SimCLR's colour and blur augmentations, milder: a material is
    known by its colour)."""
    import torch

    from reverie.encoders.image_tower import MEAN, STD

    n = batch.shape[0]
    u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(n, *shape, generator=generator)  # noqa: E731
    turn = math.pi / (9 if strong else 12)
    angle = u(-turn, turn)
    scale = u(0.85, 1.15)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = flip * torch.cos(angle) * scale
    theta[:, 0, 1] = -torch.sin(angle) * scale
    theta[:, 1, 0] = flip * torch.sin(angle) * scale
    theta[:, 1, 1] = torch.cos(angle) * scale
    theta[:, :, 2] = u(-0.12, 0.12, 2)
    grid = torch.nn.functional.affine_grid(theta, batch.shape, align_corners=False)
    out = torch.nn.functional.grid_sample(batch, grid, padding_mode="border", align_corners=False)
    if strong:
        out = _blur(_recolour(out, u(-15, 15), u(0.7, 1.3), torch.from_numpy(MEAN), torch.from_numpy(STD)), generator)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * u(0.75, 1.25, 1, 1, 1) + mean + u(-0.3, 0.3, 1, 1, 1)
    return out + 0.1 * torch.randn(out.shape, generator=generator)


def _recolour(batch, hue_deg, saturation, mean, std):
    """Each image's hue turned about the grey axis and its saturation scaled (one 3x3 matrix each), in pixel space."""
    import torch

    a = torch.deg2rad(hue_deg)
    c, s = torch.cos(a), torch.sin(a)
    k, q = (1 - c) / 3, math.sqrt(1 / 3) * s
    hue = torch.stack(
        [torch.stack(row, -1) for row in ((c + k, k - q, k + q), (k + q, c + k, k - q), (k - q, k + q, c + k))], -2
    )
    lum = torch.tensor([0.299, 0.587, 0.114])
    grey = torch.ones(3, 1) * lum  # every channel -> the luminance
    sat = saturation[:, None, None] * torch.eye(3) + (1 - saturation[:, None, None]) * grey
    matrix = sat @ hue  # [n, 3, 3]
    pixels = batch * std[:, None, None] + mean[:, None, None]
    pixels = torch.einsum("nij,njhw->nihw", matrix, pixels).clamp(0, 1)
    return (pixels - mean[:, None, None]) / std[:, None, None]


def _blur(batch, generator, p: float = 0.5, radius: int = 2):
    """A Gaussian blur (sigma 0.3-1.2 pixels) of a random half of the images, one separable grouped convolution."""
    import torch

    n, c, h, w = batch.shape
    sigma = torch.where(torch.rand(n, generator=generator) < p, 0.3 + 0.9 * torch.rand(n, generator=generator), 0.05)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [n*c, taps]
    flat = torch.nn.functional.pad(batch.reshape(1, n * c, h, w), (radius,) * 4, mode="replicate")
    flat = torch.nn.functional.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    flat = torch.nn.functional.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    return flat.reshape(n, c, h, w)


def _supcon(vecs, labels, scale: float = 10.0):
    """Supervised contrastive loss over the batch's images: each view's other views of the same
    entity are its positives, every other image a negative (the multi-positive loss of SupCon)."""
    import torch

    sims = scale * vecs @ vecs.T
    self_mask = torch.eye(len(labels), dtype=torch.bool)
    sims = sims.masked_fill(self_mask, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~self_mask
    log_p = sims.log_softmax(-1).masked_fill(~positive, 0.0)
    return -(log_p.sum(-1) / positive.sum(-1).clamp(min=1)).mean()


class _WeightAverage:
    """An exponential moving average of a module's weights and buffers (BatchNorm statistics too),
    with the usual warm-up: early on the average follows the weights closely."""

    def __init__(self, module, decay: float):
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self, module) -> None:
        import torch

        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for key, value in module.state_dict().items():
                if value.dtype.is_floating_point:
                    self.state[key].lerp_(value, 1 - decay)
                else:
                    self.state[key].copy_(value)


def train_image_tower(
    config: ClipTrainConfig,
    text_encoder=None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[ImageTokenizer, dict]:
    """Train a tower; returns it (with its codebook) and a report with held-out retrieval."""
    import torch

    from reverie.data.render import render_set
    from reverie.encoders import TextEncoder

    torch.manual_seed(config.seed)
    started = time.perf_counter()
    texts = WorldTexts.encode(text_encoder or TextEncoder())
    images, names = render_set(config.renders_per_entity, "train", config.image_size, seed=config.seed)
    rendered = sorted(texts.positives)
    label_of = {n: i for i, n in enumerate(rendered)}
    pixels = preprocess(images, config.image_size)
    labels = torch.tensor([label_of[n] for n in names])
    targets = torch.from_numpy(texts.caption_vecs)
    positive = torch.zeros(len(rendered), len(targets))
    for name, caption_rows in texts.positives.items():
        positive[label_of[name], caption_rows] = 1.0 / len(caption_rows)
    # The link itself: the entity's own text among every entity's (the Qdrant collection's vectors).
    entity_matrix = torch.from_numpy(texts.entity_vecs)
    entity_index = {n: i for i, n in enumerate(texts.entity_names)}
    entity_of = torch.tensor([entity_index[n] for n in rendered])
    prepared = time.perf_counter()

    tokenizer = ImageTokenizer(
        ImageConfig(backbone=config.backbone, image_size=config.image_size, flip_mean=config.flip_mean)
    )
    # channels-last convolutions run about a tenth faster on CPU (oneDNN's preferred layout)
    tower = tokenizer.tower.to(memory_format=torch.channels_last).train()
    # CLIP's learnable temperature, started where CLIP ends (MiniLM's texts of related entities sit
    # close together, so a soft softmax would barely tell them apart)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(50.0)))
    lr = config.learning_rate or LEARNING_RATES[config.backbone]
    optimizer = torch.optim.AdamW([*tower.parameters(), logit_scale], lr=lr, weight_decay=config.weight_decay)
    average = None if config.ema is None else _WeightAverage(tower, config.ema)
    per_batch = config.batch_size // config.views  # distinct renders in a batch, each seen `views` times
    steps_per_epoch = math.ceil(len(labels) / per_batch)
    assert config.epochs is not None  # __post_init__ fills it
    total = steps_per_epoch * config.epochs
    train_start = time.perf_counter()

    def progress_made(step: int) -> float:
        """How far along the run is: by steps, or by the clock when a time budget is the tighter."""
        done = step / total
        if config.minutes is not None:
            done = max(done, (time.perf_counter() - train_start) / (60 * config.minutes))
        return min(done, 1.0)

    def learning_rate(done: float) -> float:
        """Warm up over the first tenth, then a cosine to zero, whichever of epochs or minutes ends the run."""
        return lr * (done / 0.1 if done < 0.1 else 0.5 * (1 + math.cos(math.pi * (done - 0.1) / 0.9)))

    generator = torch.Generator().manual_seed(config.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # the clock, not a step count, ends an uncapped run: no total to count down to
        bar = tqdm(
            total=None if config.epochs == UNCAPPED_EPOCHS else total,
            desc=f"train clip ({config.backbone})",
            unit="step",
        )
    epochs_run, step, loss_value = 0, 0, float("nan")
    render_s = 0.0
    for epoch in range(config.epochs):
        if epoch and config.fresh_renders:
            tick = time.perf_counter()
            fresh, fresh_names = render_set(
                config.renders_per_entity, "train", config.image_size, seed=config.seed + 1000 + epoch
            )
            pixels, labels = preprocess(fresh, config.image_size), torch.tensor([label_of[n] for n in fresh_names])
            render_s += time.perf_counter() - tick
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), per_batch):
            rows = order[start : start + per_batch].repeat_interleave(config.views)
            batch = _augment(pixels[rows], generator, config.augment == "strong")
            vecs = torch.nn.functional.normalize(tower(batch.contiguous(memory_format=torch.channels_last)), dim=-1)
            scale = logit_scale.clamp(max=math.log(100)).exp()
            captions = -(positive[labels[rows]] * (scale * vecs @ targets.T).log_softmax(-1)).sum(-1).mean()
            truth = entity_of[labels[rows]]
            cosines = vecs @ entity_matrix.T
            if config.margin:  # the true entity must win by the margin: the nearest look-alikes carry the loss
                cosines = cosines - config.margin * torch.nn.functional.one_hot(truth, cosines.shape[1])
            links = torch.nn.functional.cross_entropy(scale * cosines, truth, label_smoothing=config.label_smoothing)
            loss = links + config.caption_weight * captions
            if config.supcon_weight:
                loss = loss + config.supcon_weight * _supcon(vecs, labels[rows])
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress_made(step))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(tower)
            step += 1
            loss_value = loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}")
        epochs_run = epoch + 1
        if progress_made(step) >= 1.0 and epochs_run < config.epochs:
            log(f"stopping after epoch {epochs_run}: the {config.minutes} minute budget is spent")
            break
    if bar is not None:
        bar.close()
    if average is not None:
        tower.load_state_dict(average.state)
    tower.to(memory_format=torch.contiguous_format).eval()
    trained = time.perf_counter()

    train_vecs = tokenizer.encode(images, progress=False)
    tokenizer.codebook = Codebook.fit(train_vecs, min(config.codebook_size, len(train_vecs)), seed=config.seed)
    held_images, held_names = render_set(
        config.held_out_per_entity, "held-out", config.image_size, seed=config.seed + 1
    )
    held_vecs = tokenizer.encode(held_images, progress=False)
    held = retrieval(held_vecs, held_names, texts.entity_names, texts.entity_vecs)
    seen = retrieval(train_vecs, names, texts.entity_names, texts.entity_vecs)
    # One scalar on the held-out renders: linking turns top-k cosines into probabilities with it.
    link_scale = fit_link_scale(held_vecs, held_names, texts.entity_names, texts.entity_vecs)
    report: dict[str, Any] = {
        "backbone": config.backbone,
        "entities": len(rendered),
        "candidates": len(texts.entity_names),
        "train_images": len(images),
        "epochs": epochs_run,
        "steps": step,
        # a drop in steps per minute between runs of one recipe means the CPU was shared
        "steps_per_minute": round(step / max((trained - train_start) / 60, 1e-9), 1),
        "render_s": round(render_s, 1),
        "final_loss": round(loss_value, 4),
        "train_top1": round(seen["top1"], 4),
        "held_out_top1": round(held["top1"], 4),
        "held_out_top5": round(held["top5"], 4),
        "link_scale": round(link_scale, 3),
        "link_nll": round(link_nll(link_scale, *_scores_truth(held_vecs, held_names, texts)), 4),
        "codebook_size": tokenizer.codebook.size,
        "prepare_s": round(prepared - started, 1),
        "train_s": round(trained - prepared, 1),
    }
    tokenizer.meta = TowerMeta(
        trained_on="the built-in world's renders",
        seconds=report["train_s"],
        held_out_top1=report["held_out_top1"],
        link_scale=report["link_scale"],
        extra=report,
    )
    return tokenizer, report


def _scores_truth(image_vecs: np.ndarray, names: list[str], texts: WorldTexts) -> tuple[np.ndarray, np.ndarray]:
    index = {n: i for i, n in enumerate(texts.entity_names)}
    return image_vecs @ texts.entity_vecs.T, np.array([index[n] for n in names])
