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


@dataclass
class ClipTrainConfig:
    """Settings of one `reverie train clip` run."""

    backbone: str = "lite"  # which image tower (encoders/image_tower.py BACKBONES)
    image_size: int = 64  # render and input side in pixels
    renders_per_entity: int = 12  # training renders of each entity per epoch
    fresh_renders: bool = (
        True  # draw new renders every epoch (new poses, colours, backgrounds), not the same ones again
    )
    epochs: int = 40  # passes over the renders, at most
    minutes: float | None = None  # stop after this many minutes of training, whatever the epoch
    batch_size: int = 64
    learning_rate: float | None = None  # None: the backbone's default (LEARNING_RATES)
    weight_decay: float = 0.05
    caption_weight: float = 0.5  # the captions' contrastive loss beside the link loss (image vs every entity's text)
    codebook_size: int = 64  # image tokens (k-means centroids over the training renders' vectors)
    held_out_per_entity: int = 2  # held-out renders per entity for the report
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "image_size",
            "renders_per_entity",
            "epochs",
            "batch_size",
            "codebook_size",
            "held_out_per_entity",
        ):
            if getattr(self, name) < 1:
                raise ReverieError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.minutes is not None and self.minutes <= 0:
            raise ReverieError(f"minutes must be positive, not {self.minutes}")


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


def _augment(batch, generator):
    """Generic variety on top of the renders: a random rotation (up to 15 degrees), scale and shift,
    a horizontal flip, brightness and contrast jitter, and pixel noise."""
    import torch

    n = batch.shape[0]
    u = lambda lo, hi, *shape: lo + (hi - lo) * torch.rand(n, *shape, generator=generator)  # noqa: E731
    angle = u(-math.pi / 12, math.pi / 12)
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
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * u(0.75, 1.25, 1, 1, 1) + mean + u(-0.3, 0.3, 1, 1, 1)
    return out + 0.1 * torch.randn(out.shape, generator=generator)


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

    tokenizer = ImageTokenizer(ImageConfig(backbone=config.backbone, image_size=config.image_size))
    tower = tokenizer.tower.train()
    # CLIP's learnable temperature, started where CLIP ends (MiniLM's texts of related entities sit
    # close together, so a soft softmax would barely tell them apart)
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(50.0)))
    lr = config.learning_rate or LEARNING_RATES[config.backbone]
    optimizer = torch.optim.AdamW([*tower.parameters(), logit_scale], lr=lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
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

        bar = tqdm(total=total, desc=f"train clip ({config.backbone})", unit="step")
    epochs_run, step, loss_value = 0, 0, float("nan")
    for epoch in range(config.epochs):
        if epoch and config.fresh_renders:
            fresh, fresh_names = render_set(
                config.renders_per_entity, "train", config.image_size, seed=config.seed + 1000 + epoch
            )
            pixels, labels = preprocess(fresh, config.image_size), torch.tensor([label_of[n] for n in fresh_names])
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            vecs = torch.nn.functional.normalize(tower(_augment(pixels[rows], generator)), dim=-1)
            scale = logit_scale.clamp(max=math.log(100)).exp()
            captions = -(positive[labels[rows]] * (scale * vecs @ targets.T).log_softmax(-1)).sum(-1).mean()
            links = torch.nn.functional.cross_entropy(scale * vecs @ entity_matrix.T, entity_of[labels[rows]])
            loss = links + config.caption_weight * captions
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress_made(step))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
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
    tower.eval()
    trained = time.perf_counter()

    train_vecs = tokenizer.encode(images, progress=False)
    tokenizer.codebook = Codebook.fit(train_vecs, min(config.codebook_size, len(train_vecs)), seed=config.seed)
    held_images, held_names = render_set(
        config.held_out_per_entity, "held-out", config.image_size, seed=config.seed + 1
    )
    held_vecs = tokenizer.encode(held_images, progress=False)
    held = retrieval(held_vecs, held_names, texts.entity_names, texts.entity_vecs)
    seen = retrieval(train_vecs, names, texts.entity_names, texts.entity_vecs)
    report: dict[str, Any] = {
        "backbone": config.backbone,
        "entities": len(rendered),
        "candidates": len(texts.entity_names),
        "train_images": len(images),
        "epochs": epochs_run,
        "final_loss": round(loss_value, 4),
        "train_top1": round(seen["top1"], 4),
        "held_out_top1": round(held["top1"], 4),
        "held_out_top5": round(held["top5"], 4),
        "codebook_size": tokenizer.codebook.size,
        "prepare_s": round(prepared - started, 1),
        "train_s": round(trained - prepared, 1),
    }
    tokenizer.meta = TowerMeta(
        trained_on="the built-in world's renders",
        seconds=report["train_s"],
        held_out_top1=report["held_out_top1"],
        extra=report,
    )
    return tokenizer, report
