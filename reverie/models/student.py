"""The student LLM: a small llama decoder distilled from the teacher (the bundled SmolLM2-135M).

It speaks through the teacher's own tokenizer and chat template, so it is a drop-in verbaliser
(reverie.llm.student.StudentLLM) and token-level distillation is possible. It learns from two
kinds of teacher replies:

- answer sentences (reverie.llm.sentences): the teacher's grounded first sentences only, so the
  student copies the teacher where the teacher was faithful (sequence-level distillation), plus
  the teacher's top-k next-token distribution at each reply position (token-level KD);
- a small share of chat replies (generic instructions, a few JSON objects), so that it keeps the
  chat behaviour every LLM backend owes (tests/test_llm.py).

The teacher comes in as a loaded reverie.llm.LocalLLM; this module imports nothing of reverie.llm
(reverie/distil.py joins the two for `reverie train student`).

Its weights are rounded to float16 after training, so the F16 GGUF that `write_gguf` writes (the
file a bundle carries, for llama.cpp, Ollama and transformers) is exactly the PyTorch student.

torch and transformers only, no Ray; both are imported by the functions that need them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reverie.atomic import replace_folder
from reverie.config import offline_hub
from reverie.errors import ReverieError

if TYPE_CHECKING:
    from reverie.llm.sentences import TaughtSentence

log = logging.getLogger(__name__)

STUDENT_VERSION = 1
CARD_FILE = "student.json"
# The student's card rides in its GGUF under this key, so an imported student keeps it.
GGUF_CARD_KEY = "reverie.student.card"
# Teacher probabilities kept per reply position for token-level KD: the top 16 hold nearly all
# of a 135M model's mass, and 16 ids + log-probs per position is a small cache.
KD_TOP_K = 16
# The share of the time budget the teacher's KD pass may take; examples it does not reach
# learn from the teacher's sentence alone.
KD_TIME_SHARE = 0.3
MAX_LENGTH = 512


class StudentError(ReverieError):
    """The student cannot be trained, saved or read (no data, a bad folder or GGUF)."""


@dataclass(frozen=True)
class StudentShape:
    """The student's size. With the teacher's 49,152-token vocabulary the embedding is most of
    it: 64 wide it is 3.1M of the ~3.4M weights (6.8 MB as F16, < 1/10 of the teacher's GGUF)."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 256
    max_positions: int = MAX_LENGTH


@dataclass(frozen=True)
class ChatExample:
    """One (system, user) prompt and the reply the student should write; `kind` says where it came from."""

    system: str | None
    user: str
    reply: str
    kind: str = "sentence"  # "sentence", "chat" or "json"


# the network


def teacher_embedding_projection(teacher_embedding, width: int):
    """The teacher's token embeddings [V, D] projected on their `width` leading principal
    directions, scaled to the usual init spread (std 0.02): tokens the teacher puts close stay
    close, so the student starts knowing which tokens are alike."""
    import torch

    embedding = teacher_embedding.detach().float()
    centred = embedding - embedding.mean(0, keepdim=True)
    # the principal directions from the D x D covariance: cheap even for 49,152 tokens
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projected = centred @ vectors[:, -width:].flip(1)
    return projected * (0.02 / projected.std())


def build_student(teacher, shape: StudentShape = StudentShape(), seed: int = 0):
    """An untrained student: a LlamaForCausalLM of `shape`, with the teacher's vocabulary, special
    tokens and rope base, tied embeddings started from the teacher's (projected). `teacher`: a
    loaded reverie.llm.LocalLLM (its transformers model and tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    teacher_model, tokenizer = teacher._loaded()
    teacher_config = teacher_model.config
    # A dict: this transformers takes rope_theta as a keyword its signature does not declare.
    options: dict[str, Any] = dict(
        vocab_size=teacher_config.vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.hidden // shape.heads,
        max_position_embeddings=shape.max_positions,
        rms_norm_eps=teacher_config.rms_norm_eps,
        rope_theta=_rope_theta(teacher_config),
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    config = LlamaConfig(**options)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(
            teacher_embedding_projection(teacher_model.model.embed_tokens.weight, shape.hidden)
        )
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.float()


def _rope_theta(config) -> float:
    """The rope base, wherever this transformers keeps it (newer ones: in rope_parameters)."""
    parameters = getattr(config, "rope_parameters", None) or {}
    return float(parameters.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)


def weight_count(model) -> int:
    """The student's distinct weights (the tied output layer counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# the data


def sentence_examples(taught: Sequence[TaughtSentence]) -> list[ChatExample]:
    """The teacher's grounded sentences as replies to their prompts; ungrounded replies are left out
    (the student copies the teacher only where the teacher was faithful). A sentence gets back the
    full stop its generation was stopped before."""
    examples = []
    for item in taught:
        if item.sentence is None:
            continue
        sentence = item.sentence.strip()
        if sentence[-1:] not in (".", "!", "?"):
            sentence += "."
        examples.append(ChatExample(item.prompt.system, item.prompt.user, sentence))
    return examples


@dataclass
class _Encoded:
    tokens: list[int]  # prompt, then reply, then the end of turn
    reply_start: int  # index of the reply's first token
    kd_ids: Any = None  # [reply length, KD_TOP_K] teacher top-k ids, once the teacher has read it
    kd_logprobs: Any = None


def _encode(tokenizer, example: ChatExample) -> _Encoded | None:
    messages = [{"role": "system", "content": example.system}] if example.system else []
    messages.append({"role": "user", "content": example.user})
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    reply = tokenizer(example.reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    tokens = list(prompt) + list(reply)
    if len(tokens) > MAX_LENGTH:
        return None
    return _Encoded(tokens, len(prompt))


def _batches(encoded: list[_Encoded], batch_size: int, rng: random.Random) -> list[list[_Encoded]]:
    """Batches of alike length (less padding), in random order."""
    order = sorted(encoded, key=lambda e: (len(e.tokens), rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(batch: list[_Encoded], pad_id: int):
    """input_ids, attention_mask [B, T] (right-padded) and, for the reply tokens, the (row,
    position) that predicts each and the token predicted."""
    import torch

    width = max(len(e.tokens) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, positions, targets = [], [], []
    for i, e in enumerate(batch):
        input_ids[i, : len(e.tokens)] = torch.tensor(e.tokens)
        attention_mask[i, : len(e.tokens)] = 1
        for t in range(e.reply_start, len(e.tokens)):
            rows.append(i)
            positions.append(t - 1)  # the hidden state at t-1 predicts token t
            targets.append(e.tokens[t])
    return input_ids, attention_mask, torch.tensor(rows), torch.tensor(positions), torch.tensor(targets)


def _teacher_top_k(teacher_model, encoded: list[_Encoded], deadline: float, batch_size: int, progress: bool) -> int:
    """Fill each example's kd_ids / kd_logprobs with the teacher's top-k log-probs at each reply
    position (one teacher forward over prompt and reply), until `deadline`; returns how many."""
    import torch
    from tqdm.auto import tqdm

    done = 0
    bar = tqdm(total=len(encoded), desc="teacher top-k", unit="reply", disable=not progress, leave=False)
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            if time.monotonic() >= deadline:
                break
            batch = encoded[start : start + batch_size]
            input_ids, attention_mask, rows, positions, _ = _pad(batch, 0)
            hidden = teacher_model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            logprobs = torch.log_softmax(teacher_model.lm_head(hidden[rows, positions]).float(), dim=-1)
            top = logprobs.topk(KD_TOP_K, dim=-1)
            offset = 0
            for e in batch:
                n = len(e.tokens) - e.reply_start
                e.kd_ids = top.indices[offset : offset + n].to(torch.int32)
                e.kd_logprobs = top.values[offset : offset + n].float()
                offset += n
            done += len(batch)
            bar.update(len(batch))
    bar.close()
    return done


# training


def train_student(
    taught: Sequence[TaughtSentence],
    out_dir: str | os.PathLike,
    minutes: float = 12.0,
    teacher: Any = None,
    kd_weight: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    log_dir: str | os.PathLike | None = None,
    chat: Sequence[ChatExample] = (),
    steps: int | None = None,
    shape: StudentShape = StudentShape(),
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    teacher_name: str = "local",
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Distil the teacher into a new student and save it to `out_dir`; returns its card.

    `taught`: the teacher's answer sentences (only the grounded ones are learnt); `chat`: chat
    replies the teacher wrote (reverie.distil.teach_chat), mixed in as they are. `teacher`: the
    loaded reverie.llm.LocalLLM whose tokenizer and embeddings the student takes and, with `kd_weight`
    > 0, whose top-k next-token distributions it is pulled towards (KL, beside the cross-entropy
    on the teacher's tokens). It must be the model that wrote the replies for KD to mean anything.

    Time: `minutes` bounds the whole run (the teacher's KD pass takes at most 30% of it), with the
    learning rate on a cosine over the budget; `steps` instead fixes the number of optimiser steps
    (a reproducible run, as the tests use). `log_dir`: a home whose runs/ gets the TensorBoard and
    JSON-lines log (kind "student"). The weights are rounded to float16 at the end.
    """
    offline_hub()
    import torch
    from tqdm.auto import tqdm

    from reverie.runs import RunLog

    started = time.monotonic()
    budget_s = minutes * 60.0
    if steps is None and budget_s <= 0:
        raise StudentError(f"the training time must be above 0 minutes, not {minutes}")
    examples = sentence_examples(taught)
    n_sentences = len(examples)
    if not examples:
        raise StudentError("no grounded teacher sentence to learn from: teach more prompts (--per-graph)")
    examples += list(chat)
    if teacher is None:
        raise StudentError("the student needs its teacher (a loaded LocalLLM): its tokenizer and embeddings")
    teacher_model, tokenizer = teacher._loaded()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    encoded = [e for e in (_encode(tokenizer, example) for example in examples) if e is not None]
    model = build_student(teacher, shape, seed)

    kd_covered = 0
    if kd_weight > 0:
        rng.shuffle(encoded)  # the KD pass covers a random share when the time runs short
        kd_deadline = math.inf if steps is not None else started + KD_TIME_SHARE * budget_s
        kd_covered = _teacher_top_k(teacher_model, encoded, kd_deadline, 16, progress)
    teacher_seconds = time.monotonic() - started

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.98),
    )
    warmup = 0.03

    def rate(progress_share: float) -> float:
        if progress_share < warmup:
            return learning_rate * progress_share / warmup
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (progress_share - warmup) / (1 - warmup))))
        return learning_rate * (0.05 + 0.95 * cosine)

    run = RunLog(Path(log_dir), "student", teacher_name) if log_dir is not None else None
    train_started = time.monotonic()
    train_budget = max(1.0, budget_s - (train_started - started))
    bar = tqdm(total=steps or int(train_budget), desc="student", unit="step" if steps else "s", disable=not progress)
    step, epoch, last = 0, 0, {}
    ce_sum = kd_sum = 0.0
    seen = 0
    model.train()
    finished = False
    while not finished:
        epoch += 1
        for batch in _batches(encoded, batch_size, rng):
            share = step / steps if steps else (time.monotonic() - train_started) / train_budget
            if share >= 1.0:
                finished = True
                break
            for group in optimizer.param_groups:
                group["lr"] = rate(share)
            ce, kd = _losses(model, batch, tokenizer.eos_token_id)
            loss = ce if kd is None else ce + kd_weight * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            ce_sum += ce.item()
            kd_sum += kd.item() if kd is not None else 0.0
            seen += 1
            if step % 25 == 0:
                last = {
                    "step": step,
                    "epoch": epoch,
                    "loss": {"ce": ce_sum / seen, "kd": kd_sum / seen},
                    "lr": rate(share),
                }
                if run is not None:
                    run(last)
                if on_point is not None:
                    on_point(last)
                bar.set_postfix(ce=f"{ce_sum / seen:.3f}", kd=f"{kd_sum / seen:.3f}")
                ce_sum = kd_sum = 0.0
                seen = 0
            if steps:
                bar.update(1)
            else:
                bar.n = min(int(time.monotonic() - train_started), bar.total)
                bar.refresh()
    bar.close()
    if seen:
        last = {"step": step, "epoch": epoch, "loss": {"ce": ce_sum / seen, "kd": kd_sum / seen}}
        if run is not None:
            run(last)
    if run is not None:
        run.close()
    model.eval()
    round_to_float16(model)
    training_seconds = time.monotonic() - started
    card = {
        "version": STUDENT_VERSION,
        "teacher": teacher_name,
        "shape": asdict(shape),
        "weights": weight_count(model),
        "data": {
            "sentences": n_sentences,
            "chat": sum(1 for e in chat if e.kind == "chat"),
            "json": sum(1 for e in chat if e.kind == "json"),
            "examples": len(encoded),
            "kd_covered": kd_covered,
        },
        "kd_weight": kd_weight,
        "kd_top_k": KD_TOP_K,
        "seed": seed,
        "steps": step,
        "epochs": epoch,
        "teacher_seconds": round(teacher_seconds, 1),
        "training_seconds": round(training_seconds, 1),
        "final_loss": last.get("loss", {}),
        "run": run.id if run is not None else None,
    }
    save_student(model, tokenizer, out_dir, card)
    return card


def _losses(model, batch: list[_Encoded], pad_id: int):
    """Cross-entropy on the reply tokens, and the KL from the teacher's top-k (renormalised) to the
    student at the reply positions the teacher has read (None when none has). The output layer runs
    at the reply positions only: over 49,152 tokens it is most of the cost."""
    import torch

    input_ids, attention_mask, rows, positions, targets = _pad(batch, pad_id)
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    logits = model.lm_head(hidden[rows, positions])
    logprobs = torch.log_softmax(logits, dim=-1)
    ce = torch.nn.functional.nll_loss(logprobs, targets)
    with_kd = [e.kd_ids is not None for e in batch]
    if not any(with_kd):
        return ce, None
    lengths = [len(e.tokens) - e.reply_start for e in batch]
    selected = torch.cat([torch.full((n,), has, dtype=torch.bool) for n, has in zip(lengths, with_kd, strict=True)])
    kd_ids = torch.cat([e.kd_ids for e in batch if e.kd_ids is not None]).long()
    teacher_logprobs = torch.cat([e.kd_logprobs for e in batch if e.kd_logprobs is not None])
    teacher_probs = torch.softmax(teacher_logprobs, dim=-1)  # the top-k, renormalised
    student = logprobs[selected].gather(1, kd_ids)
    kd = (teacher_probs * (torch.log(teacher_probs.clamp_min(1e-9)) - student)).sum(-1).mean()
    return ce, kd


def round_to_float16(model) -> None:
    """Round every weight to float16 precision, kept as float32: the F16 GGUF then holds exactly
    the weights the PyTorch student computes with."""
    import torch

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.to(torch.float16).to(torch.float32))


# saving and reading


def save_student(model, tokenizer, out_dir: str | os.PathLike, card: dict[str, Any]) -> Path:
    """The student as a transformers folder (safetensors, config, tokenizer) with its card
    (student.json), written to a staging folder beside `out_dir` and renamed into place."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's folder is private; a home's folders are not
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def load_student(student_dir: str | os.PathLike):
    """(model, tokenizer) of a saved student, float32, in eval mode."""
    offline_hub()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    student_dir = Path(student_dir)
    if not (student_dir / "config.json").is_file():
        raise StudentError(f"no student in {student_dir}: reverie train student")
    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    model = AutoModelForCausalLM.from_pretrained(str(student_dir)).float().eval()
    return model, tokenizer


def read_card(student_dir: str | os.PathLike) -> dict[str, Any]:
    """The student's card (student.json); {} when it has none."""
    try:
        return json.loads((Path(student_dir) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# GGUF


def _permute_for_llama_cpp(weights, heads: int):
    """Q and K rows reordered as llama.cpp's convert_hf_to_gguf.py does (its rope pairs
    neighbouring dimensions; transformers pairs halves); transformers undoes it on load."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(student_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """The student as a llama-architecture F16 GGUF at `path` (written then renamed): llama.cpp's
    metadata keys and tensor names, Q and K permuted as llama.cpp expects, the norms in F32, and the
    student's (SmolLM2's) tokenizer and chat template as llama.cpp writes them. The card rides along under
    `reverie.student.card`."""
    import gguf
    import numpy as np

    model, tokenizer = load_student(student_dir)
    config = model.config
    card = read_card(student_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name("reverie-student")
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_rope_dimension_count(config.head_dim)
        writer.add_rope_freq_base(_rope_theta(config))
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        _write_tokenizer(tokenizer, Path(student_dir) / "tokenizer.json", writer)
        writer.add_string(GGUF_CARD_KEY, json.dumps(card))

        state = {name: tensor.detach().float().numpy() for name, tensor in model.state_dict().items()}
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads

        def matrix(name: str, array) -> None:
            writer.add_tensor(name, np.ascontiguousarray(array.astype(np.float16)))

        def vector(name: str, array) -> None:
            writer.add_tensor(name, np.ascontiguousarray(array.astype(np.float32)))

        matrix("token_embd.weight", state["model.embed_tokens.weight"])
        for i in range(config.num_hidden_layers):
            hf = f"model.layers.{i}."
            blk = f"blk.{i}."
            vector(blk + "attn_norm.weight", state[hf + "input_layernorm.weight"])
            matrix(blk + "attn_q.weight", _permute_for_llama_cpp(state[hf + "self_attn.q_proj.weight"], heads))
            matrix(blk + "attn_k.weight", _permute_for_llama_cpp(state[hf + "self_attn.k_proj.weight"], kv_heads))
            matrix(blk + "attn_v.weight", state[hf + "self_attn.v_proj.weight"])
            matrix(blk + "attn_output.weight", state[hf + "self_attn.o_proj.weight"])
            vector(blk + "ffn_norm.weight", state[hf + "post_attention_layernorm.weight"])
            matrix(blk + "ffn_gate.weight", state[hf + "mlp.gate_proj.weight"])
            matrix(blk + "ffn_up.weight", state[hf + "mlp.up_proj.weight"])
            matrix(blk + "ffn_down.weight", state[hf + "mlp.down_proj.weight"])
        vector("output_norm.weight", state["model.norm.weight"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_tokenizer(tokenizer, tokenizer_json: Path, writer) -> None:
    """The student's tokenizer as llama.cpp's BPE ("gpt2") fields: the tokens by id (special ones
    as control tokens), the merges, the special ids and the chat template. "smollm" names the
    pre-tokenizer llama.cpp applies to this (SmolLM2's) vocabulary. Written from the student's own
    folder, so a GGUF needs nothing but the student; the fields equal the bundled SmolLM2 GGUF's."""
    import gguf

    model = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]
    if model.get("type") != "BPE":
        raise StudentError(f"the student's tokenizer is {model.get('type')}, not the BPE a llama GGUF carries")
    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    if [vocab[token] for token in tokens] != list(range(len(tokens))):
        raise StudentError("the student's vocabulary has gaps in its token ids")
    control = set(tokenizer.added_tokens_decoder)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    writer.add_token_merges([pair if isinstance(pair, str) else " ".join(pair) for pair in model["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0)
    writer.add_pad_token_id(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    writer.add_add_bos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(tokenizer.chat_template)


def student_from_gguf(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """A student folder (as `train_student` saves it) from a GGUF that `write_gguf` wrote; the
    card comes back from the GGUF's metadata."""
    offline_hub()
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise StudentError(f"no student GGUF at {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise StudentError(f"{path} is not a GGUF file: {exc}") from None
    architecture = reader.fields.get("general.architecture")
    if architecture is None or architecture.contents() != "llama":
        raise StudentError(f"{path} is not a llama GGUF, so not a Reverie student")
    card_field = reader.fields.get(GGUF_CARD_KEY)
    card = json.loads(card_field.contents()) if card_field is not None else {}
    del reader
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model = model.float().eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return save_student(model, tokenizer, out_dir, card)
