"""A tiny student LLM trained in seconds on replies the bundled SmolLM2 writes, shared by the
tests that need one (tests/test_student.py, the backend contract in tests/test_llm.py): it is
trained once per test process, into a folder of its own, and copied into each home that asks."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reverie.distil import teach_chat
from reverie.llm.base import Sampling
from reverie.llm.local import LocalLLM
from reverie.llm.sentences import SentencePrompt, TaughtSentence, graph_triples, sentence_prompts, split_prompts
from reverie.llm.verbalize import SENTENCE_ENDS, grounded_sentence
from reverie.models.student import StudentShape, train_student

# Small enough to train in seconds, big enough to learn to copy the answer from its prompt.
TINY_SHAPE = StudentShape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128)
TINY_STEPS = 240
# the world's prompts: the teacher answers the train ones, the student is judged on the held-out ones
WORLD_PROMPTS = 48
# replies cut short: a tiny student learns as much from their first 20 tokens, at half the teacher's time
TEACHER_TOKENS = 20
# the prompts the backend contract (tests/test_llm.py) puts, so that the student has chatted before
CHAT = (
    "What happens when you drop a glass cup?",
    "Name a colour.",
    "Tell me about cats.",
    "The validation loss stopped falling. What should the training do?",
)
JSON = ("Describe a cat as JSON with its name and colour.",)


@dataclass(frozen=True)
class TinyStudent:
    folder: Path  # the trained student (a transformers folder with its card)
    teacher: LocalLLM  # the loaded SmolLM2 that taught it
    card: dict
    taught: list[TaughtSentence]  # what it learnt from (the grounded ones)
    held_out: list[SentencePrompt]  # world prompts about subjects it never saw


_trained: dict[str, TinyStudent] = {}


def tiny_student(teacher: LocalLLM | None = None) -> TinyStudent:
    """The process's tiny student, trained on the first call (~a minute on 2 cores) by `teacher`
    (a loaded LocalLLM; None loads one without a cache)."""
    if "student" not in _trained:
        root = Path(tempfile.mkdtemp(prefix="reverie-tiny-student-"))
        atexit.register(shutil.rmtree, root, True)  # the test process's scratch, gone when it ends
        teacher = teacher or LocalLLM().load()
        prompts = sentence_prompts({"world": graph_triples("world")}, WORLD_PROMPTS, seed=0)
        train, held_out = split_prompts(prompts, held_out=0.25, seed=0)
        say = Sampling(temperature=0.0, top_k=1, max_new_tokens=TEACHER_TOKENS, stop=SENTENCE_ENDS)
        replies = teacher.generate_many([(p.user, p.system, None) for p in train], say)
        taught = [
            TaughtSentence(p, "local", text, grounded_sentence(text, p.question, p.chain))
            for p, text in zip(train, replies, strict=True)
        ]
        taught = [t for t in taught if t.sentence is not None]
        chat = teach_chat(teacher, None, prompts=CHAT, json_prompts=JSON, max_new_tokens=TEACHER_TOKENS)
        card = train_student(
            taught,
            root / "student",
            teacher=teacher,
            chat=chat,
            steps=TINY_STEPS,
            shape=TINY_SHAPE,
            batch_size=16,
            progress=False,
        )
        _trained["student"] = TinyStudent(root / "student", teacher, card, taught, held_out)
    return _trained["student"]


def install_student(student: TinyStudent, student_dir: Path) -> Path:
    """A copy of the tiny student at `student_dir` (a home's Home.student)."""
    if student_dir.exists():
        shutil.rmtree(student_dir)
    shutil.copytree(student.folder, student_dir)
    return student_dir
