"""The distilled student against its teacher and the template, on held-out answer-sentence prompts.

The prompts are the held-out share of the ones `reverie train student` makes
(reverie/llm/sentences.py home_prompts: prompts from the world, UMLS and Kinship, held out by
subject, so no held-out fact was trained on); `--per-graph` of each graph are measured. For each
verbaliser:

- faithfulness (reverie/llm/faithfulness.py): answer inclusion, chain grounding, and the pass rate
  of Reverie's own grounding check (grounded_sentence: the reply Reverie would say rather than the
  template); ROUGE-L of each first sentence to the teacher's;
- speed on 2 cores (torch's threads = 2): greedy replies as Reverie verbalises (stop at the first
  sentence end, at most 48 tokens), one at a time through `stream` and in batches of 16 through
  `generate_many`; tokens counted with the (shared SmolLM2) tokenizer;
- file size (the teacher's bundled GGUF; the student's GGUF, written from its folder) and training
  time (the student's card).

The teacher's replies to the held-out prompts come from the home's teacher cache (written by
`reverie train student` or `python -m reverie.llm.sentences`); any missing are generated.

    python -m bench.student --home /tmp/student-home   -> bench/results/student.md and student.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.common import RESULTS, write_table
from reverie.config import Settings, offline_hub
from reverie.llm.base import Finish, Sampling
from reverie.llm.faithfulness import faithfulness_report
from reverie.llm.local import LocalLLM, bundled_gguf_path
from reverie.llm.registry import LLM_BACKENDS
from reverie.llm.sentences import (
    BUILTIN_GRAPHS,
    TEACHER_MAX_NEW_TOKENS,
    SentencePrompt,
    cached_per_graph,
    home_prompts,
    teach,
)
from reverie.llm.verbalize import SENTENCE_ENDS, template_sentence

GREEDY = Sampling(temperature=0.0, top_k=1, max_new_tokens=TEACHER_MAX_NEW_TOKENS, stop=SENTENCE_ENDS)
BATCH = 16
GOALS = {
    "faithfulness": "≥ teacher",
    "tokens_per_s": "≥ 10× teacher",
    "size": "≤ 1/10 of teacher",
    "training": "≤ 15 min",
}


def held_out_sample(settings: Settings, per_graph: int, args) -> list[SentencePrompt]:
    """`per_graph` held-out prompts of each graph, drawn with the seed (the same each run)."""
    if args.train_per_graph is None:  # as far as the teacher cache reaches: the bench then asks the teacher nothing
        args.train_per_graph = cached_per_graph(settings, args.graphs, args.seed, "local")
        if args.train_per_graph == 0:
            raise SystemExit(
                f"the teacher cache in {settings.home} is empty: python -m reverie.llm.sentences --home ..."
            )
    _, held = home_prompts(settings, args.graphs, args.train_per_graph, args.seed, args.held_out)
    rng = np.random.default_rng(args.seed)
    sample = []
    for graph in sorted({p.graph for p in held}):
        of_graph = [p for p in held if p.graph == graph]
        picked = sorted(rng.permutation(len(of_graph))[:per_graph].tolist())
        sample.extend(of_graph[i] for i in picked)
    return sample


def replies(backend, prompts: Sequence[SentencePrompt]) -> list[str]:
    out: list[str] = []
    for start in range(0, len(prompts), BATCH):
        batch = prompts[start : start + BATCH]
        out.extend(backend.generate_many([(p.user, p.system, None) for p in batch], GREEDY))
    return out


def speed(backend, tokenizer, prompts: Sequence[SentencePrompt], one_by_one: int, batched: int) -> dict:
    """Tokens/s and sentences/s: `one_by_one` prompts streamed one at a time, `batched` through generate_many."""
    backend.generate(prompts[0].user, prompts[0].system, GREEDY)  # warm: first-call costs are not speed
    tokens, started = 0, time.perf_counter()
    first_piece: list[float] = []
    for prompt in prompts[:one_by_one]:
        asked = time.perf_counter()
        for i, item in enumerate(backend.stream(prompt.user, prompt.system, GREEDY)):
            if i == 0:
                first_piece.append(time.perf_counter() - asked)
            if isinstance(item, Finish):
                tokens += item.completion_tokens
    stream_s = time.perf_counter() - started
    sample = prompts[:batched]
    started = time.perf_counter()
    texts = replies(backend, sample)
    batch_s = time.perf_counter() - started
    batch_tokens = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts)
    return {
        "stream_tokens_per_s": tokens / stream_s,
        "stream_sentences_per_s": one_by_one / stream_s,
        "stream_first_piece_s": float(np.median(first_piece)),
        "batch_tokens_per_s": batch_tokens / batch_s,
        "batch_sentences_per_s": len(sample) / batch_s,
    }


def student_files(student_dir: Path) -> dict:
    """The student's size (its GGUF, else its safetensors) and its card's training time."""
    from reverie.models import student as student_model

    card = student_model.read_card(student_dir)
    out = {"card": card, "training_seconds": card.get("training_seconds")}
    if hasattr(student_model, "write_gguf"):
        with tempfile.TemporaryDirectory() as folder:
            path = student_model.write_gguf(student_dir, Path(folder) / "student.gguf")
            out.update(size_bytes=path.stat().st_size, size_of="GGUF (F16)")
    else:
        out.update(size_bytes=sum(p.stat().st_size for p in student_dir.glob("*.safetensors")), size_of="safetensors")
    return out


def measure(args) -> dict:
    import torch

    offline_hub()
    torch.set_num_threads(args.threads)
    settings = Settings(home=args.home)
    prompts = held_out_sample(settings, args.per_graph, args)
    print(f"{len(prompts)} held-out prompts", flush=True)

    teacher = LocalLLM.from_settings(settings).load()
    taught = teach(prompts, teacher, settings.paths.sentences(teacher.name), progress=True)
    teacher_texts = [record.text for record in taught]
    rows: dict[str, dict] = {}
    rows["teacher"] = {
        "backend": f"{teacher.name} (SmolLM2-135M-Instruct)",
        **faithfulness_report(prompts, teacher_texts, teacher_texts),
        **speed(teacher, teacher._tokenizer, prompts, args.stream_prompts, args.batch_prompts),
        "size_bytes": bundled_gguf_path().stat().st_size,
        "size_of": "GGUF (Q4_1)",
        "generated_now": taught.generated,
    }
    tokenizer = teacher._tokenizer
    templates = [template_sentence(p.question, p.chain) for p in prompts]
    rows["template"] = {"backend": "template", **faithfulness_report(prompts, templates, teacher_texts)}

    student_dir = settings.paths.student
    note = ""
    if "student" not in LLM_BACKENDS:
        note = "no student backend in LLM_BACKENDS yet (reverie/llm/student.py): the student's rows are left out"
    elif not (student_dir / "config.json").is_file():
        note = f"no student in {args.home} (reverie train student): the student's rows are left out"
    else:
        student = LLM_BACKENDS["student"].from_settings(settings).load()
        started = time.perf_counter()
        student_texts = replies(student, prompts)
        rows["student"] = {
            "backend": "student",
            **faithfulness_report(prompts, student_texts, teacher_texts),
            **speed(student, tokenizer, prompts, args.stream_prompts, args.batch_prompts),
            **student_files(student_dir),
            "all_replies_s": time.perf_counter() - started,
            "examples": [
                {
                    "question": prompts[i].question,
                    "answer": prompts[i].answer,
                    "teacher": teacher_texts[i],
                    "student": student_texts[i],
                }
                for i in range(0, len(prompts), max(1, len(prompts) // 8))
            ],
        }
    return {
        "command": "python -m bench.student " + " ".join(args.argv),
        "prompts": len(prompts),
        "per_graph": args.per_graph,
        "train_per_graph": args.train_per_graph,
        "graphs": list(args.graphs),
        "threads": args.threads,
        "rows": rows,
        "note": note,
        "teacher_choice": args.teacher_choice,
    }


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(result: dict, name: str = "student") -> Path:
    """bench/results/NAME.json (the figures) and NAME.md (the table, the notes, the goals)."""
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows = result["rows"]
    teacher, student = rows["teacher"], rows.get("student")
    columns = ["teacher", "template", "student"]

    def line(label: str, key: str, goal: str = "", digits: int = 3, scale: float = 1.0) -> list:
        cells = []
        for column in columns:
            value = rows.get(column, {}).get(key)
            cells.append(fmt(value * scale if isinstance(value, float | int) else value, digits))
        return [label, *cells, goal]

    def met(ok: bool | None) -> str:
        return "" if ok is None else (" — met" if ok else " — not met")

    faithful = None
    speedup = size_ratio = None
    if student:
        faithful = all(student[k] >= teacher[k] for k in ("answer_included", "chain_grounded"))
        speedup = student["stream_tokens_per_s"] / teacher["stream_tokens_per_s"]
        size_ratio = student["size_bytes"] / teacher["size_bytes"]
    training = student.get("training_seconds") if student else None
    table = [
        line("answer inclusion", "answer_included", f"{GOALS['faithfulness']}{met(faithful)}"),
        line("chain grounding", "chain_grounded", f"{GOALS['faithfulness']}{met(faithful)}"),
        line("grounded_sentence passes (Reverie says the model's sentence)", "grounded_sentence"),
        line("ROUGE-L to the teacher", "rouge_l"),
        line(
            "tokens/s, one at a time (stream)",
            "stream_tokens_per_s",
            f"{GOALS['tokens_per_s']}{met(None if speedup is None else speedup >= 10)}"
            + (f" ({speedup:.1f}×)" if speedup else ""),
            1,
        ),
        line("sentences/s, one at a time", "stream_sentences_per_s", "", 2),
        line("first piece, one at a time (s)", "stream_first_piece_s", "", 3),
        line(f"tokens/s, batches of {BATCH}", "batch_tokens_per_s", "", 1),
        line(f"sentences/s, batches of {BATCH}", "batch_sentences_per_s", "", 2),
        line(
            "file size (MB)",
            "size_bytes",
            f"{GOALS['size']}{met(None if size_ratio is None else size_ratio <= 0.1)}"
            + (f" ({size_ratio:.3f}×)" if size_ratio else ""),
            1,
            1e-6,
        ),
        [
            "training time (min)",
            "–",
            "–",
            fmt(None if training is None else training / 60, 1),
            f"{GOALS['training']}{met(None if training is None else training <= 900)}",
        ],
    ]
    notes = [
        f"{result['prompts']} held-out prompts (up to {result['per_graph']} of each of {', '.join(result['graphs'])}, "
        f"from the prompts of `--per-graph {result.get('train_per_graph')}`), "
        "held out by subject entity: no fact of theirs was in the student's training data. "
        f"Greedy, cut at the first sentence end, at most {TEACHER_MAX_NEW_TOKENS} tokens, as Reverie verbalises; "
        f"torch on {result['threads']} threads. Measures: reverie/llm/faithfulness.py (chain grounding: Reverie's "
        "grounding check and ≥ 80% of the sentence's content words from the chain, question and answer). "
        "The template says the chain itself, so it is the ceiling of grounding, not a model.",
        "File sizes: the teacher's bundled GGUF (Q4_1) against the student's GGUF (F16). Speeds are measured "
        "on whatever else the machine runs: compare them only within one run.",
    ]
    if student:
        card = student.get("card", {})
        notes.append(f"Student card: {json.dumps({k: v for k, v in card.items() if not isinstance(v, dict | list)})}")
        examples = [f"- {e['question']} → {e['teacher']!r} | {e['student']!r}" for e in student["examples"]]
        notes.append("\n".join(["Examples (question → teacher | student):", "", *examples]))
    if result.get("note"):
        notes.append(result["note"])
    if result.get("teacher_choice"):
        notes.append(f"Teacher choice: {result['teacher_choice']}")
    return write_table(
        name,
        "The distilled student against its teacher and the template (held-out answer sentences)",
        result["command"],
        ["measure", "teacher", "template", "student", "goal"],
        table,
        notes="\n\n".join(notes),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True, help="the home the student was trained in")
    parser.add_argument("--per-graph", type=int, default=100, help="held-out prompts measured per graph")
    parser.add_argument("--graphs", nargs="+", default=list(BUILTIN_GRAPHS))
    parser.add_argument(
        "--train-per-graph",
        type=int,
        help="as `reverie train student --per-graph` (default: as many as the teacher cache answers)",
    )
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stream-prompts", type=int, default=8)
    parser.add_argument("--batch-prompts", type=int, default=32)
    parser.add_argument("--teacher-choice", default="", help="a note on why this teacher (bench/results/student.md)")
    parser.add_argument("--render", type=Path, help="only write the table from this JSON")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.render:
        render(json.loads(args.render.read_text()))
        return
    render(measure(args))


if __name__ == "__main__":
    main()
