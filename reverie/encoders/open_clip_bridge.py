"""Real open_clip weights without training here: `REVERIE_CLIP_WEIGHTS` (an open_clip checkpoint)
with `REVERIE_CLIP_ARCH` (its architecture, e.g. ViT-B-32, or a model-config JSON file).

CLIP's image and text towers share one space, and MiniLM has its own; a linear map fit on text
alone (CLIP's text vectors of the world's entity texts and captions -> MiniLM's vectors of the same
texts, ridge regression) carries CLIP's image vectors into MiniLM's space, where the graph's
entities are. No image is needed to fit it. The codebook is k-means over the built-in world's
renders, bridged the same way.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from reverie.encoders.image_tower import Codebook, ImageConfig, ImageModelMissingError, ImageTokenizer, TowerMeta
from reverie.errors import ReverieError

RIDGE = 1e-2  # the map's L2 penalty, relative to the texts' count


def bridge_texts() -> list[str]:
    """Texts whose two embeddings fit the map: the world's entity texts and the renders' captions."""
    from reverie.data.render import captions
    from reverie.data.world import build_world
    from reverie.encoders.text import entity_text

    entities, _ = build_world()
    texts = [entity_text(e) for e in entities] + [c for caps in captions().values() for c in caps]
    return list(dict.fromkeys(texts))


def fit_map(source: np.ndarray, target: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """W minimising |source W - target|^2 + ridge * n * |W|^2."""
    gram = source.T @ source + ridge * len(source) * np.eye(source.shape[1], dtype=source.dtype)
    return np.linalg.solve(gram, source.T @ target).astype(np.float32)


class OpenClipBridge(ImageTokenizer):
    """An open_clip model's image tower, with its vectors mapped into MiniLM's space."""

    def __init__(self, arch: str, weights: Path, text_encoder=None, device: str = "cpu", codebook_size: int = 64):
        import open_clip
        import torch

        if arch.endswith(".json"):
            if not Path(arch).is_file():
                raise ReverieError(f"REVERIE_CLIP_ARCH names a model config that does not exist: {arch}")
            open_clip.add_model_config(arch)
            arch = Path(arch).stem
        if arch not in open_clip.list_models():
            raise ReverieError(
                f"unknown open_clip architecture {arch!r} (REVERIE_CLIP_ARCH); e.g. ViT-B-32, RN50, or a model-config .json file"
            )
        if not Path(weights).is_file():
            raise ImageModelMissingError(f"no open_clip checkpoint at {weights} (REVERIE_CLIP_WEIGHTS)")
        try:
            model = open_clip.create_model(arch, pretrained=str(weights), device=device)
        except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError, struct.error) as exc:
            reason = (str(exc).splitlines() or [""])[0][:160]
            raise ImageModelMissingError(f"{weights} is not an open_clip {arch} checkpoint ({reason})") from None
        self.model = model.eval()
        self.arch = arch
        size = model.visual.image_size
        self.config = ImageConfig(backbone="clip", image_size=size[0] if isinstance(size, (tuple, list)) else size)
        self.device = torch.device(device)
        self.tower = model.visual
        self.meta = TowerMeta(trained_on=f"open_clip {arch} weights from {weights}")
        self.codebook = None

        from reverie.encoders import TextEncoder

        texts = bridge_texts()
        clip_tokens = open_clip.get_tokenizer(arch)
        with torch.inference_mode():
            clip_text = torch.cat(
                [model.encode_text(clip_tokens(texts[i : i + 256]).to(self.device)) for i in range(0, len(texts), 256)]
            )
        clip_vectors = torch.nn.functional.normalize(clip_text.float(), dim=-1).cpu().numpy()
        self.map = torch.from_numpy(fit_map(clip_vectors, (text_encoder or TextEncoder()).encode(texts)))

        from reverie.data.render import render_set

        renders, _ = render_set(1, "train", self.config.image_size)
        vectors = self.encode(renders, progress=False)
        self.codebook = Codebook.fit(vectors, min(codebook_size, len(vectors)))

    @property
    def name(self) -> str:
        return f"open_clip:{self.arch}"

    def save(self, path: Path) -> None:
        raise ReverieError(
            "an open_clip bridge is rebuilt from its checkpoint (REVERIE_CLIP_WEIGHTS + REVERIE_CLIP_ARCH), not saved"
        )

    def embed(self, pixels):
        import torch

        clip_vecs = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        return clip_vecs @ self.map.to(clip_vecs.device)
