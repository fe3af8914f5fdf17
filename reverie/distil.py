"""Distilling a home's student LLM end to end: the teacher's answer sentences and chat replies,
the student trained on them, and judged on held-out prompts (`reverie train student`,
`Reverie.train_student`).

Above both rooms it joins: the LLM backends (the teacher, reverie.llm) and the student network
(reverie.models.student), which know nothing of each other.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reverie.models.student import ChatExample, StudentError, train_student, write_gguf

# Generic instructions the teacher answers once, so the student keeps talking like a chat model.
CHAT_PROMPTS = (
    "Name a colour.",
    "Tell me about cats.",
    "Tell me about dogs.",
    "What is the capital of France?",
    "What happens when you drop a glass cup?",
    "What happens when ice is heated?",
    "Why is the sky blue?",
    "Describe the sea in one sentence.",
    "Give me a tip for learning to cook.",
    "What is a graph?",
    "Explain what a neural network is.",
    "Say hello.",
    "What is two plus two?",
    "Name a fruit that is yellow.",
    "What do plants need to grow?",
    "Write a short sentence about the moon.",
    "What is rain?",
    "How do birds fly?",
    "Suggest a name for a dog.",
    "What is the weather like in summer?",
    "The validation loss stopped falling. What should the training do?",
    "What is a knowledge graph?",
    "Why do we sleep?",
    "What is music?",
    "Give me one reason to read books.",
    "What is a mountain?",
    "How does a bicycle work?",
    "What is fire?",
    "Tell me a fact about the sun.",
    "What does a teacher do?",
    "What is the opposite of hot?",
    "Describe a tree.",
)
CHAT_SYSTEMS = (None, "Answer in one sentence.")
JSON_PROMPTS = (
    "Describe a cat as JSON with its name and colour.",
    "Describe a dog as JSON with its name and age.",
    "Give a book as JSON with its title and author.",
    "Describe a city as JSON with its name and country.",
    "Describe a car as JSON with its make and colour.",
    "Give a person as JSON with a name and an age.",
    "Describe a fruit as JSON with its name and colour.",
    "Describe a planet as JSON with its name and size.",
)


def teach_chat(
    teacher,
    cache_path: Path | None = None,
    prompts: Sequence[str] = CHAT_PROMPTS,
    json_prompts: Sequence[str] = JSON_PROMPTS,
    max_new_tokens: int = 48,
    cached_only: bool = False,
) -> list[ChatExample]:
    """The teacher's greedy replies to generic instructions (each without and with a short system
    message) and to JSON prompts (in JSON mode): what keeps the student a chat model. Cached in the
    JSONL at `cache_path` (written then renamed), so a second call asks the teacher nothing;
    `cached_only` asks it nothing at all (the cached replies only)."""
    from reverie.atomic import atomic_write
    from reverie.llm.base import Sampling

    cached: dict[tuple, ChatExample] = {}
    if cache_path is not None and Path(cache_path).is_file():
        for line in Path(cache_path).read_text(encoding="utf-8").splitlines():
            try:
                record = ChatExample(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a line a crash cut short
            cached[(record.system, record.user, record.kind)] = record
    before = len(cached)
    greedy = Sampling(temperature=0.0, top_k=40, max_new_tokens=max_new_tokens)
    wanted = [(system, user) for user in prompts for system in CHAT_SYSTEMS]
    missing = [(system, user) for system, user in wanted if (system, user, "chat") not in cached]
    if cached_only:
        missing, json_prompts = [], [user for user in json_prompts if (None, user, "json") in cached]
    for start in range(0, len(missing), 16):  # batches of 16: nearly the time of one reply each
        batch = missing[start : start + 16]
        replies = teacher.generate_many([(user, system, None) for system, user in batch], greedy)
        for (system, user), reply in zip(batch, replies, strict=True):
            if reply.strip():
                cached[(system, user, "chat")] = ChatExample(system, user, reply.strip(), "chat")
    as_json = Sampling(temperature=0.0, top_k=40, max_new_tokens=max(60, max_new_tokens), json_object=True)
    for user in json_prompts:
        if (None, user, "json") in cached:
            continue
        reply = teacher.generate(user, None, as_json)
        try:
            if isinstance(json.loads(reply), dict):
                cached[(None, user, "json")] = ChatExample(None, user, reply, "json")
        except ValueError:
            continue  # the teacher did not close its object in 60 tokens: nothing to learn from
    if cache_path is not None and len(cached) > before:
        lines = "".join(json.dumps(asdict(record)) + "\n" for record in cached.values())
        atomic_write(cache_path, lines.encode("utf-8"))
    keep = set(wanted) | {(None, user) for user in json_prompts}
    return [record for key, record in cached.items() if key[:2] in keep]


# Prompts per graph that delexicalised sentences are drawn for (prompts cost no teacher time).
AUGMENT_POOL_PER_GRAPH = 4000


def distil_home(
    settings,
    teacher: str = "local",
    graphs: Sequence[str] | None = None,
    per_graph: int = 1200,
    minutes: float = 12.0,
    kd_weight: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    cached_only: bool = False,
    augment: int = 8,
) -> dict[str, Any]:
    """`reverie train student`: the teacher's sentences for the home's prompts (reverie.llm.sentences,
    cached in Home.sentences(teacher)), its chat replies (cached beside them), a student trained on
    both into Home.student, then judged on the held-out prompts. Returns the card with "gguf_bytes"
    (the size of its F16 GGUF) and "held_out" (the student's and the teacher's grounded share).
    `cached_only`: learn from the replies the teacher's cache holds already, asking it nothing new
    (a cache still being filled, or a quick run). `augment`: each chain-grounded teacher sentence
    also says up to this many other prompts of the same relations in its words (0: none).

    Token-level KD needs the teacher's tokenizer, so with a teacher other than the bundled model
    ("ollama") the student learns its sentences alone (kd_weight 0) and takes the bundled model's
    tokenizer and embeddings."""
    from reverie.home import Home
    from reverie.llm.base import Sampling
    from reverie.llm.faithfulness import chain_grounded
    from reverie.llm.local import LocalLLM
    from reverie.llm.registry import LLM_BACKENDS
    from reverie.llm.sentences import BUILTIN_GRAPHS, delexicalised, home_prompts, read_cache, teach_home
    from reverie.llm.student import StudentLLM
    from reverie.llm.verbalize import SENTENCE_ENDS, grounded_sentence

    if minutes <= 0:
        raise StudentError(f"--minutes must be above 0, not {minutes}")
    if kd_weight < 0:
        raise StudentError(f"--kd-weight must be at least 0, not {kd_weight}")
    import torch

    torch.set_num_threads(settings.model_threads)
    home = Home(settings.home)
    graphs = tuple(graphs or BUILTIN_GRAPHS)
    if cached_only:
        train_prompts, held_out = home_prompts(settings, graphs, per_graph, seed, 0.1)
        cached = read_cache(home.sentences(teacher))
        taught = [cached[p.key] for p in train_prompts if p.key in cached and cached[p.key].sentence is not None]
    else:
        taught, held_out = teach_home(
            settings, graphs, per_graph=per_graph, seed=seed, progress=progress, teacher=teacher
        )
    # Only sentences every word of which the chain backs (faithfulness.chain_grounded) are learnt,
    # and each lends its wording to other prompts of the same relations (sentences.delexicalised).
    taught = [t for t in taught if t.sentence and chain_grounded(t.sentence, t.prompt.question, t.prompt.chain)]
    teacher_sentences = len(taught)
    if augment > 0:
        pool, _ = home_prompts(settings, graphs, max(per_graph, AUGMENT_POOL_PER_GRAPH), seed, 0.1)
        taught += delexicalised(taught, pool, augment, seed)
    bundled = LocalLLM.from_settings(settings)
    chat_teacher = bundled if teacher == "local" else LLM_BACKENDS[teacher].from_settings(settings)
    chat = teach_chat(chat_teacher, home.sentences(f"{teacher}-chat"), cached_only=cached_only)
    card = train_student(
        taught,
        home.student,
        minutes=minutes,
        teacher=bundled,
        kd_weight=kd_weight if teacher == "local" else 0.0,
        seed=seed,
        progress=progress,
        log_dir=settings.home,
        chat=chat,
        teacher_name=teacher,
    )
    card["data"].update(teacher_sentences=teacher_sentences, delexicalised=len(taught) - teacher_sentences)
    with tempfile.TemporaryDirectory(dir=home.student.parent) as scratch:
        card["gguf_bytes"] = write_gguf(home.student, Path(scratch) / "student.gguf").stat().st_size
    say = Sampling(temperature=0.0, top_k=1, max_new_tokens=48, stop=SENTENCE_ENDS)
    student = StudentLLM(home.student)
    replies = student.generate_many([(p.user, p.system, None) for p in held_out], say) if held_out else []
    cached = read_cache(home.sentences(teacher))
    teacher_grounded = [cached[p.key].sentence is not None for p in held_out if p.key in cached]
    card["held_out"] = {
        "prompts": len(held_out),
        "student_grounded": sum(
            grounded_sentence(r, p.question, p.chain) is not None for p, r in zip(held_out, replies, strict=True)
        )
        / max(1, len(held_out)),
        "teacher_grounded": sum(teacher_grounded) / max(1, len(teacher_grounded)),
    }
    return card
