"""The image tower's host: ImageEncoder, what the image actor and Serve deployment run (a trained
tower, encoders/image_tower.py, or real open_clip weights, encoders/open_clip_bridge.py), and
tower_path, where its weights live. Plain torch, no Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reverie.encoders.image_tower import ImageModelMissingError, ImageTokenizer
from reverie.encoders.open_clip_bridge import OpenClipBridge
from reverie.images import MAX_IMAGE_PIXELS, load_image


def tower_path(settings) -> Path:
    """REVERIE_CLIP_WEIGHTS when set, else where `reverie train clip` saves under REVERIE_HOME."""
    return Path(settings.clip_weights) if settings.clip_weights else settings.paths.image_tower


DEFAULT_LINK_SCALE = 30.0
"""For a tower with no fitted link scale: a cosine 0.05 ahead makes a link about 4.5 times as likely."""


class ImageEncoder:
    """What the ImageEncoder actor and Serve's Encoders deployment host: the tower at `weights`, loaded on
    first use (so a server without one starts, and says how to get one when asked) and again
    when the file changes (after `reverie train clip` on a running server)."""

    def __init__(
        self, weights: Path, max_pixels: int = MAX_IMAGE_PIXELS, threads: int | None = None, arch: str | None = None
    ):
        self.weights = Path(weights)
        self.arch = arch
        self.max_pixels = max_pixels
        self.threads = threads
        self._loaded: tuple[float, ImageTokenizer] | None = None

    def tokenizer(self) -> ImageTokenizer:
        try:
            stamp = self.weights.stat().st_mtime
        except OSError:
            raise ImageModelMissingError(
                f"no image tower at {self.weights}: run `reverie train clip`, or set REVERIE_CLIP_WEIGHTS to a checkpoint"
            ) from None
        if self._loaded is None or self._loaded[0] != stamp:
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            tokenizer: ImageTokenizer
            if self.arch:
                tokenizer = OpenClipBridge(self.arch, self.weights)
            else:
                tokenizer = ImageTokenizer.load(self.weights)
            self._loaded = (stamp, tokenizer)
        return self._loaded[1]

    def encode_images(self, images: list[bytes]) -> np.ndarray:
        """Unit vectors of images sent as bytes; each is checked (format, size, mode) first."""
        checked = [load_image(im, self.max_pixels, name=f"image {i + 1}") for i, im in enumerate(images)]
        return self.tokenizer().encode(checked)

    def image_link_scale(self) -> float:
        """The scale that turns an image's cosine similarities to entities into link probabilities
        (softmax(scale * cosine)): fit on held-out renders when the tower was trained, else the default."""
        scale = getattr(self.tokenizer(), "link_scale", None)
        return float(scale) if scale else DEFAULT_LINK_SCALE

    def image_codebook(self) -> np.ndarray | None:
        book = self.tokenizer().codebook
        return None if book is None else book.centroids

    def describe(self) -> dict:
        return {"weights": str(self.weights), **self.tokenizer().describe()}
