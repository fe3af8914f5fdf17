"""Images into the text encoder's space: an image tower (open_clip architectures or a small CNN)
whose vectors land next to MiniLM's vectors of matching captions, and a k-means codebook that
turns those vectors into discrete image tokens. Plain torch, no Ray.

The text tower is MiniLM itself, locked (the LiT recipe with the roles turned: the text side is
the pretrained, frozen one), so an image links to the same Qdrant entity collection as text.
`reverie train clip` fits the tower (encoders/image_training.py); a checkpoint holds the tower's
config, weights and codebook. What the image actor and deployment host is encoders/image.py's
ImageEncoder; the checks every input image passes are reverie/images.py's.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reverie.atomic import atomic_file
from reverie.encoders.text import text_dim
from reverie.errors import ReverieError
from reverie.images import load_image

if TYPE_CHECKING:
    import torch

# open_clip's normalisation (OPENAI_DATASET_MEAN/STD), so real open_clip trunks see what they expect.
MEAN = np.array((0.48145466, 0.4578275, 0.40821073), np.float32)
STD = np.array((0.26862954, 0.26130258, 0.27577711), np.float32)
PROGRESS_FROM = 512  # a progress bar on batches at least this large


class ImageModelMissingError(ReverieError):
    """No trained image tower: a state the user fixes with `reverie train clip`."""

    status = 409


@dataclass
class ImageConfig:
    """The image tower's shape. Every field is saved with the weights."""

    backbone: str = "lite"  # "clip" (open_clip ViT), "resnet" (open_clip ModifiedResNet) or "lite" (small CNN)
    image_size: int = 64  # square input side in pixels; images are resized and centre-cropped to it
    width: int | None = (
        None  # ViT width, ResNet stem width, or the CNN's first channel count (None: the backbone's default)
    )
    layers: int | None = None  # ViT blocks or CNN stages (ResNet: always 4 stages of one block); None: the default
    patch_size: int = 8  # ViT patch side
    # an image's vector is the mean of its and its mirror image's: twice the tower's work for a few
    # points of held-out top-1 (the training flips too, so both halves agree; off for older checkpoints)
    flip_mean: bool = False
    embed_dim: int = field(default_factory=text_dim)  # the image tower's output lands in the text space

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ReverieError(f"unknown image backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        width, layers = BACKBONE_SIZES[self.backbone]
        self.width = self.width or width
        self.layers = self.layers or layers
        if self.image_size < 16 or self.image_size > 512:
            raise ReverieError(f"image_size must be within 16..512, not {self.image_size}")
        if self.backbone == "clip" and self.image_size % self.patch_size:
            raise ReverieError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.backbone == "resnet" and self.image_size % 32:
            raise ReverieError(
                f"the resnet backbone needs an image_size that is a multiple of 32, not {self.image_size}"
            )


def _clip_tower(config: ImageConfig):
    from open_clip.transformer import VisionTransformer

    assert config.width is not None and config.layers is not None  # ImageConfig.__post_init__ fills them
    return VisionTransformer(
        image_size=config.image_size,
        patch_size=config.patch_size,
        width=config.width,
        layers=config.layers,
        heads=max(1, config.width // 32),
        mlp_ratio=4.0,
        output_dim=config.embed_dim,
    )


def _resnet_tower(config: ImageConfig):
    from open_clip.modified_resnet import ModifiedResNet

    assert config.width is not None  # ImageConfig.__post_init__ fills it
    # open_clip's rule: heads = width * 32 // head_width, with head_width 64
    return ModifiedResNet(
        layers=[1, 1, 1, 1],
        output_dim=config.embed_dim,
        heads=max(1, config.width // 2),
        image_size=config.image_size,
        width=config.width,
    )


def _lite_tower(config: ImageConfig):
    """Seed 000's vision encoder grown up: conv stages that halve the side, then average pooling."""
    import torch.nn as nn

    assert config.width is not None and config.layers is not None  # ImageConfig.__post_init__ fills them
    blocks, channels = [], 3
    for i in range(config.layers):
        out = config.width * 2 ** min(i, 3)
        blocks += [
            nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.GELU(),
            nn.Conv2d(out, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.GELU(),
        ]
        channels = out
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, config.embed_dim))


# Widths that train in minutes on two CPU cores (about 1 M weights each).
BACKBONE_SIZES: dict[str, tuple[int, int]] = {"clip": (128, 4), "resnet": (16, 4), "lite": (32, 4)}
# The one registry of image backbones: a string picks the tower's builder.
BACKBONES: dict[str, Callable] = {"clip": _clip_tower, "resnet": _resnet_tower, "lite": _lite_tower}


def build_tower(config: ImageConfig):
    return BACKBONES[config.backbone](config)


def preprocess(images: Sequence, size: int) -> "torch.Tensor":
    """Resize the shorter side to `size`, centre-crop, normalise: a float tensor [n, 3, size, size]."""
    import torch
    from PIL import Image

    out = np.empty((len(images), 3, size, size), np.float32)
    for i, image in enumerate(images):
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        pixels = np.asarray(image.crop((left, top, left + size, top + size)), np.float32) / 255.0
        out[i] = ((pixels - MEAN) / STD).transpose(2, 0, 1)
    return torch.from_numpy(out)


# ---------- the codebook ----------
@dataclass
class Codebook:
    """k-means centroids of image vectors (unit rows); an image's token is its nearest centroid."""

    centroids: np.ndarray

    @property
    def size(self) -> int:
        return len(self.centroids)

    @classmethod
    def fit(cls, vectors: np.ndarray, size: int, seed: int = 0) -> "Codebook":
        from sklearn.cluster import KMeans

        if size < 1 or size > len(vectors):
            raise ReverieError(f"a codebook of {size} tokens needs 1..{len(vectors)} (the number of image vectors)")
        kmeans = KMeans(n_clusters=size, n_init=3, random_state=seed).fit(vectors)
        centroids = kmeans.cluster_centers_.astype(np.float32)
        return cls(centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9))

    def tokens(self, vectors: np.ndarray) -> np.ndarray:
        return np.argmax(np.asarray(vectors, np.float32) @ self.centroids.T, axis=1).astype(np.int64)

    def vectors(self, tokens: np.ndarray) -> np.ndarray:
        return self.centroids[np.asarray(tokens, np.int64)]


# ---------- the tokenizer ----------
@dataclass
class TowerMeta:
    """What a checkpoint records beside the weights."""

    trained_on: str = ""
    seconds: float = 0.0
    held_out_top1: float | None = None
    # s of p_k = softmax(s * cosine_k): the link temperature fit on held-out renders (None: not fit)
    link_scale: float | None = None
    extra: dict = field(default_factory=dict)


class ImageTokenizer:
    """Images -> unit vectors in MiniLM's 384-d space (and, with a codebook, token ids)."""

    def __init__(
        self, config: ImageConfig, device: str = "cpu", codebook: Codebook | None = None, meta: TowerMeta | None = None
    ):
        import torch

        self.config = config
        self.device = torch.device(device)
        self.tower = build_tower(config).to(self.device).eval()
        self.codebook = codebook
        self.meta = meta or TowerMeta()

    @property
    def name(self) -> str:
        return self.config.backbone

    @property
    def link_scale(self) -> float | None:
        """The calibrated link temperature: softmax(link_scale * cosines) over candidate entities gives
        link probabilities. None for a tower trained before it was fit, or from elsewhere."""
        return self.meta.link_scale

    def encode(self, images: Sequence, batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
        """One unit vector per image (bytes, path or PIL image): an (n, 384) float32 array."""
        import torch

        if isinstance(images, (bytes, str, Path)):
            raise TypeError("tokenize takes a list of images")
        if batch_size < 1:
            raise ReverieError(f"batch_size must be at least 1, not {batch_size}")
        out = np.zeros((len(images), self.config.embed_dim), np.float32)
        show = len(images) >= PROGRESS_FROM if progress is None else progress
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc=f"tokenize ({self.name})", unit="img")
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = [
                    load_image(im, name=f"image {start + i}") for i, im in enumerate(images[start : start + batch_size])
                ]
                pixels = preprocess(batch, self.config.image_size).to(self.device)
                vecs = torch.nn.functional.normalize(self.embed(pixels).float(), dim=-1)
                out[start : start + len(batch)] = vecs.cpu().numpy()
                if bar is not None:
                    bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    def embed(self, pixels):
        """The tower's output for preprocessed pixels; a tower from elsewhere maps its own here."""
        import torch

        if not self.config.flip_mean:
            return self.tower(pixels)
        both = torch.nn.functional.normalize(self.tower(torch.cat([pixels, pixels.flip(-1)])), dim=-1)
        return both[: len(pixels)] + both[len(pixels) :]

    def describe(self) -> dict:
        return {
            "backbone": self.name,
            "image_size": self.config.image_size,
            "codebook_size": 0 if self.codebook is None else self.codebook.size,
            **asdict(self.meta),
        }

    def tokens(self, vectors: np.ndarray) -> np.ndarray:
        if self.codebook is None:
            raise ImageModelMissingError("this image tower has no codebook; retrain it with `reverie train clip`")
        return self.codebook.tokens(vectors)

    # ---------- checkpoints ----------
    def save(self, path: Path) -> None:
        """Config, weights, codebook and meta in one file, written then renamed."""
        import torch

        state = {
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.tower.state_dict().items()},
            "codebook": None if self.codebook is None else torch.from_numpy(self.codebook.centroids),
            "meta": asdict(self.meta),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as handle:
            torch.save(state, handle)

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> "ImageTokenizer":
        import torch

        path = Path(path)
        if not path.is_file():
            raise ImageModelMissingError(
                f"no image tower at {path}: run `reverie train clip`, or set REVERIE_CLIP_WEIGHTS to a checkpoint"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            config = ImageConfig(**state["config"])
        except (RuntimeError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError, struct.error) as exc:
            reason = (str(exc).splitlines() or [""])[0][:120]
            raise ImageModelMissingError(
                f"{path} is not a Reverie image-tower checkpoint ({type(exc).__name__}: {reason}); `reverie train clip` writes one"
            ) from None
        codebook = None if state.get("codebook") is None else Codebook(state["codebook"].numpy())
        tokenizer = cls(config, device, codebook, TowerMeta(**state.get("meta", {})))
        tokenizer.tower.load_state_dict(state["state_dict"])
        return tokenizer
