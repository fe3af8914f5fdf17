"""reverie ingest | ask | chat | serve | stats | fractal train|chat|talk|save|load | train policy | train tuner | eval [policy] | eval tuner | tune headline | tune policy.

Bad input prints one line to stderr and exits 2; it is checked before Ray starts where it can be.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from reverie.agents.lr_control.config import LRControlTrainConfig
from reverie.agents.path_policy.config import LearnerConfig, PolicyTrainConfig
from reverie.errors import ReverieError
from reverie.models.reasoner_config import ReasonerConfig

POLICY_DEFAULTS = PolicyTrainConfig()
LOCAL_HELP = (
    "do not go through the `reverie serve` that holds this home (the default when one runs): "
    "start Reverie's own local Ray instead"
)
TUNER_DEFAULTS = LRControlTrainConfig()


def _settings(args: argparse.Namespace):
    from reverie.config import get_settings

    settings = get_settings()
    if getattr(args, "address", None):
        settings = settings.model_copy(update={"address": args.address})
    return settings


def _server(args: argparse.Namespace, settings):
    """The `reverie serve` holding this home, asked over HTTP (no Ray started here), unless
    `--local` or `--address` asks for Reverie's own Ray."""
    if getattr(args, "local", False) or settings.address:
        return None
    from reverie.client import running_server

    return running_server(settings, message=lambda text: print(f"reverie: {text}", file=sys.stderr, flush=True))


def _reverie(settings):
    """The Python API over these settings: the CLI runs the same code as `reverie.Reverie`."""
    from reverie.api import Reverie

    return Reverie.from_settings(settings)


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if (bool(args.path) + bool(args.dataset) + bool(args.images)) != 1:
        raise ReverieError("give exactly one of PATH, --dataset NAME or --images FILE.jsonl")
    source = args.dataset or args.path or args.images
    settings = _settings(args)
    server = _server(args, settings)
    if server is not None:
        return _ingest_through(server, args)
    reverie = _reverie(settings)
    bars = []  # opened at the first progress report: a bad input fails before any bar is drawn

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(
                tqdm(total=total, unit="img" if args.images else "text", desc=f"ingest {source}", disable=args.quiet)
            )
        bars[0].n = done
        bars[0].refresh()

    report = reverie.ingest(args.path, dataset=args.dataset, images=args.images, progress=progress)
    for bar in bars:
        bar.close()
    _print_ingest(args, report, reverie.stats)
    return 0


def _ingest_through(server, args: argparse.Namespace) -> int:
    """Ingest by the running server: the input is read and checked here, then sent as triples."""
    from reverie.data.kg import load_dataset, read_file
    from reverie.schemas import GraphStats

    if args.images:
        raise ReverieError(
            f"a `reverie serve` holds this home ({server.url}) and images are not ingested over HTTP: "
            "stop the server, then ingest the images"
        )
    if args.dataset or Path(args.path).is_dir():
        kg = load_dataset(args.dataset or args.path)
        triples, entities, source = kg.graph, kg.entities, kg.name
    else:
        triples, entities = read_file(args.path)
        source = str(args.path)
    report = server.ingest(list(triples), list(entities), source)
    _print_ingest(args, report, lambda: GraphStats.model_validate(server.health()["graph"]))
    return 0


def _print_ingest(args: argparse.Namespace, report, stats_now) -> None:
    if args.json:
        print(report.model_dump_json(indent=2))
    elif args.images:
        print(
            f"ingested {args.images}: {report.triples_read} lines, {report.triples_added} new triples, "
            f"{report.entities_added} new entities in {report.seconds:.1f}s"
        )
    else:
        stats = stats_now()
        print(
            f"ingested {report.source}: {report.triples_added} new of {report.triples_read} triples, "
            f"{report.entities_added} new entities, {report.relations_added} new relations in {report.seconds:.1f}s; "
            f"graph now {stats.entities} entities, {stats.relations} relations, {stats.triples} triples"
        )
    for policy, count in report.folded.items():
        print(f"{count} new facts joined the {policy} policy's graph: walkable now, learnt from by `reverie learn`")


def _show_chain(chain, indent: str = "  ") -> list[str]:
    lines = []
    for i, step in enumerate(chain.steps, 1):
        flags = " [imagined]" if step.imagined else ""
        lines.append(
            f"{indent}{i}. {step.what} --[{step.action}]--> {step.result}{flags}   (edge {step.edge_id}, source {step.source})"
        )
    return lines


def cmd_ask(args: argparse.Namespace) -> int:
    settings = _settings(args)
    reverie = _reverie(settings)
    options = {"rollouts": args.rollouts, "hops": args.hops, "seed": args.seed, "verbalize": not args.no_llm}
    query = reverie.query(args.question, image=args.image, **options)  # bad input fails before Ray starts
    server = _server(args, settings)
    if server is not None:
        verdict = server.ask(query)
    else:
        reverie.warm_up(llm=query.verbalize)  # so the stage timings printed measure the work, not start-up
        verdict = reverie.ask(query)
    if args.json:
        print(verdict.model_dump_json(indent=2))
        return 0
    print("\n".join(verdict_lines(verdict)))
    return 0


def verdict_lines(verdict) -> list[str]:
    """What `reverie ask` prints of a Verdict: the answer and its chain, or, when the graph does not
    say, that and the nearest chains."""

    def path(chain) -> str:
        return " -> ".join([chain.steps[0].what] + [f"[{s.action}] {s.result}" for s in chain.steps])

    if verdict.route == "small-talk":  # no graph: the LLM's reply, and nothing to show of a chain
        return [f"Q: {verdict.question}", f"A: {verdict.answer}", f"   small talk · said by {verdict.backend}"]
    best = verdict.candidates[0]
    lines = [f"Q: {verdict.question}"]
    if verdict.resolved_question:
        lines.append(f"   asked as: {verdict.resolved_question}")
    if verdict.image is not None:
        token = "" if verdict.image.token is None else f", image token {verdict.image.token}"
        lines.append(f"   the image shows: {verdict.image.entity} (similarity {verdict.image.score:.2f}{token})")
    lines.append(f"A: {verdict.answer}")
    where = f" on {len(verdict.nodes)} nodes" if len(verdict.nodes) > 1 else ""
    if verdict.chain is None:
        lines.append(f"   not sure: confidence {verdict.confidence:.2f} · walked by {verdict.policy}")
        lines.append("Nearest chains (none of them an answer):")
        lines += [
            f"  - {c.answer} (confidence {c.confidence or 0:.2f}): {path(c.best_chain)}" for c in verdict.candidates
        ]
    else:
        lines.append(
            f"   answer: {verdict.answer_entity} · confidence {verdict.confidence:.2f} · score {best.score:.3f} · {best.votes}/{verdict.rollouts} rollouts{where} · said by {verdict.backend}"
        )
        expert = verdict.chain.expert
        shown_by = "" if expert in (verdict.policy, "policy") else f", {expert} expert"
        lines.append(f"Chain (by {verdict.policy}{shown_by}):")
        lines += _show_chain(verdict.chain)
        if verdict.alternatives:
            lines.append("Alternatives:")
            lines += [
                f"  - {c.answer} (score {c.score:.3f}, {c.votes} rollouts): {path(c.best_chain)}"
                for c in verdict.candidates[1:]
            ]
    lines.append("Timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in verdict.timings_ms.items()))
    return lines


def cmd_chat(args: argparse.Namespace) -> int:
    """An interactive session, as `ollama run` is one (reverie/chat.py); piped input is one turn a line."""
    from reverie.chat import ChatSession, run_chat

    session = ChatSession(stream=not args.no_stream, verbose=args.verbose, system=args.system)
    if args.seed is not None:
        session.parameters["seed"] = args.seed
    settings = _settings(args)
    server = _server(args, settings)
    api, tty = _reverie(settings), sys.stdin.isatty()
    return run_chat(api, sys.stdin, sys.stdout, tty, session=session, server=server, explain=verdict_lines)


def cmd_stats(args: argparse.Namespace) -> int:
    from reverie.schemas import GraphStats

    settings = _settings(args)
    server = _server(args, settings)
    if server is not None:
        stats = GraphStats.model_validate(server.health()["graph"])
    elif settings.address:
        stats = _reverie(settings).stats()
    else:  # the snapshot, read in this process: counting needs no Ray
        from reverie.graph_store import GraphStore

        stats = GraphStore(settings).stats()
    print(stats.model_dump_json())
    return 0


def cmd_train_policy(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reverie.api import kg_dataset

    if args.no_world_model and args.imagined:
        raise ReverieError("--imagined needs the world model: drop --no-world-model")
    config = POLICY_DEFAULTS.replace(
        dataset=args.dataset,
        iterations=args.iterations,
        minutes=args.minutes,
        envs=args.envs,
        seed=args.seed,
        env={
            "hops": args.hops,
            "imagined_edges": args.imagined,
            "shaper": args.shaper,
            **({"shaping": 0.0} if args.no_world_model else {}),
        },
        net={"experts": args.experts, "use_entities": args.entity_features},
        teacher={"kind": args.teacher, "clone_epochs": args.clone_epochs, "weight": args.teacher_weight},
    )
    dataset = kg_dataset(args.dataset)  # a clear error before Ray starts
    settings = _settings(args)
    if args.teacher == "reasoner" and not settings.paths.reasoner(dataset.name).is_file():
        raise ReverieError(
            f"--teacher reasoner needs a reasoner: run `reverie train reasoner --dataset {args.dataset}` first"
        )
    if args.shaper == "reasoner":
        if not settings.paths.reasoner(dataset.name).is_file():
            raise ReverieError(
                f"--shaper reasoner needs a reasoner: run `reverie train reasoner --dataset {args.dataset}` first"
            )
    bar = tqdm(total=args.iterations, unit="iter", desc=f"train policy {args.dataset}")

    def progress(info: dict) -> None:
        bar.update(1)
        bar.set_postfix(return_mean=f"{info['episode_return_mean']:.3f}", steps_per_s=f"{info['env_steps_per_s']:.0f}")

    folder = _reverie(settings).train_policy(config, progress=progress, message=lambda msg: print(msg, flush=True))
    bar.close()
    print(f"policy saved to {folder}")
    return 0


def cmd_train_reasoner(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reverie.agents.path_policy.net import read_policy_meta
    from reverie.api import kg_dataset

    config = ReasonerConfig(
        dim=args.dim,
        layers=args.layers,
        heads=args.heads,
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        minutes=args.minutes,
        hide=args.hide,
        max_nodes=args.max_nodes,
        seed=args.seed,
    )
    dataset = kg_dataset(args.dataset)
    settings = _settings(args)
    bar = tqdm(desc=f"train reasoner {dataset.name}", unit="eval")

    def progress(record: dict) -> None:
        bar.update(1)
        bar.set_postfix(
            epoch=record["epoch"], step=record["step"], loss=f"{record['loss']:.3f}", dev_mrr=f"{record['dev_mrr']:.3f}"
        )

    reasoner = _reverie(settings).train_reasoner(args.dataset, config, progress=progress)
    bar.close()
    path = settings.paths.reasoner(dataset.name)
    print(
        f"reasoner saved to {path} (best dev MRR {reasoner.stats['best_dev_mrr']:.3f}, temperature {reasoner.temperature:.2f})"
    )
    folder = settings.paths.policy(dataset.name)
    if (folder / "config.json").is_file():
        m = read_policy_meta(folder / "config.json")
        print(
            f"added to the policy in {folder}: arbiter weights (paths {m.arbiter_weight:g}, world model {m.world_weight:g}), "
            f"temperature {m.temperature:.2f}, fit on dev"
        )
    return 0


def cmd_train_memory(args: argparse.Namespace) -> int:
    import json

    from reverie.data.conversations import CONVERSATION_GRAPHS
    from reverie.models.conversation_memory import MemoryTraining, save_memory, train_memory

    if args.conversations < 10:
        raise ReverieError(f"--conversations must be at least 10, got {args.conversations}")
    if args.epochs < 1:
        raise ReverieError(f"--epochs must be at least 1, got {args.epochs}")
    unknown = sorted(set(args.graphs) - set(CONVERSATION_GRAPHS))
    if unknown:
        raise ReverieError(f"unknown graph {unknown[0]!r}: use {', '.join(CONVERSATION_GRAPHS)}")
    settings = _settings(args)
    import torch

    from reverie.encoders import TextEncoder

    torch.set_num_threads(settings.model_threads)
    training = MemoryTraining(
        conversations_per_graph=args.conversations, graphs=tuple(args.graphs), epochs=args.epochs, seed=args.seed
    )
    model, report = train_memory(TextEncoder().encode, training, progress=not args.json)
    out = Path(args.out) if args.out else settings.paths.conversation_memory
    card = {
        "graphs": list(training.graphs),
        "conversations_per_graph": training.conversations_per_graph,
        "epochs": training.epochs,
        "seed": training.seed,
        "examples": report.examples,
        "train_accuracy": round(report.train_accuracy, 4),
        "seconds": round(report.seconds, 1),
    }
    save_memory(model, out, card)
    if args.json:
        print(json.dumps({"saved_to": str(out), **card}))
    else:
        print(
            f"conversational memory saved to {out}: {report.examples} follow-ups of {len(training.graphs)} graphs, "
            f"{report.train_accuracy:.1%} resolved on its training set, {report.seconds:.0f}s"
        )
    return 0


def cmd_train_hub(args: argparse.Namespace) -> int:
    import json

    from reverie.models.hub import ROUTERS, save_router, train_router

    if args.router not in ROUTERS:
        raise ReverieError(f"unknown router {args.router!r}: use {', '.join(ROUTERS)}")
    if args.epochs < 1:
        raise ReverieError(f"--epochs must be at least 1, got {args.epochs}")
    settings = _settings(args)
    import torch

    from reverie.encoders import TextEncoder

    torch.set_num_threads(settings.model_threads)
    router = train_router(args.router, TextEncoder().encode, seed=args.seed, epochs=args.epochs, progress=not args.json)
    out = Path(args.out) if args.out else settings.paths.router(args.router)
    save_router(router, out)
    card = {"saved_to": str(out), **router.card}
    if args.json:
        print(json.dumps(card))
    else:
        print(
            f"{args.router} router saved to {out}: {router.card['held_out_accuracy']:.1%} of held-out messages "
            "routed right"
        )
    return 0


def cmd_train_clip(args: argparse.Namespace) -> int:
    from reverie.encoders.image import tower_path
    from reverie.encoders.image_training import ClipTrainConfig, train_image_tower

    config = ClipTrainConfig(
        backbone=args.backbone,
        image_size=args.image_size,
        renders_per_entity=args.renders,
        epochs=args.epochs,
        minutes=args.minutes,
        codebook_size=args.codebook_size,
        seed=args.seed,
    )
    from reverie.encoders.image_tower import ImageConfig

    ImageConfig(
        backbone=config.backbone, image_size=config.image_size
    )  # a bad backbone or size fails here, in one line
    settings = _settings(args)
    path = Path(args.out) if args.out else tower_path(settings)
    import torch

    torch.set_num_threads(settings.model_threads)
    tokenizer, report = train_image_tower(config)
    tokenizer.save(path)
    print(
        f"image tower ({config.backbone}) saved to {path}: held-out renders link to the right entity "
        f"{report['held_out_top1']:.1%} top-1, {report['held_out_top5']:.1%} top-5 among {report['candidates']} entities "
        f"(chance {1 / report['candidates']:.1%}); {report['epochs']} epochs ({report['steps']} steps) in {report['train_s']:.0f}s, "
        f"codebook of {report['codebook_size']} tokens; link scale {report['link_scale']:.1f} (p = softmax(scale * cosine))"
    )
    return 0


def _headline_config(args: argparse.Namespace, **changes):
    """The headline runs the tuner commands train or compare on (validated before Ray starts)."""
    from reverie.agents.lr_control.trainees.headline import HeadlineConfig

    fields = {"dataset": args.dataset, "model": args.model, "budget": args.budget, "embedder": args.embedder, **changes}
    return HeadlineConfig(**{k: v for k, v in fields.items() if v is not None})


def _control_config(args: argparse.Namespace, trainee_config):
    from reverie.agents.lr_control.config import ControlConfig

    return ControlConfig(
        trainee_config=trainee_config, **({"intervals": args.intervals} if args.intervals is not None else {})
    )


def _embed_once(settings, headline) -> None:
    """Embed the dataset now, with a progress bar, rather than inside the first run."""
    from tqdm import tqdm

    from reverie.agents.lr_control.trainees.headline import embed_dataset
    from reverie.data.headlines import load_texts

    if settings.paths.embeddings(headline.dataset, headline.embedder).is_file():
        return
    data = load_texts(headline.dataset)
    with tqdm(total=len(data), unit="text", desc=f"embed {headline.dataset} ({headline.embedder})") as bar:
        embed_dataset(settings.home, data, headline.embedder, lambda done, total: bar.update(done - bar.n))


def cmd_train_student(args: argparse.Namespace) -> int:
    """Distil the teacher into the home's student LLM and say what it came to."""
    from reverie.distil import distil_home

    settings = _settings(args)
    card = distil_home(
        settings,
        teacher=args.teacher,
        graphs=args.graphs,
        per_graph=args.per_graph,
        minutes=args.minutes,
        kd_weight=args.kd_weight,
        seed=args.seed,
        progress=not args.json,
        cached_only=args.cached_only,
        augment=args.augment,
    )
    if args.json:
        print(json.dumps(card))
        return 0
    held = card["held_out"]
    print(
        f"student saved to {settings.paths.student}: {card['weights'] / 1e6:.2f}M weights, "
        f"{card['gguf_bytes'] / 1e6:.1f} MB as GGUF, trained in {card['training_seconds'] / 60:.1f} min "
        f"on {card['data']['teacher_sentences']} {args.teacher} sentences and {card['data']['delexicalised']} in their words; held-out replies grounded "
        f"{held['student_grounded']:.0%} (teacher {held['teacher_grounded']:.0%}, {held['prompts']} prompts)"
    )
    return 0


def cmd_train_tuner(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reverie.actors import init_ray
    from reverie.agents.lr_control.train import train_lr_control

    headline = _headline_config(args)
    config = LRControlTrainConfig(
        control=_control_config(args, headline),
        iterations=args.iterations,
        minutes=args.minutes,
        envs=args.envs,
        seed=args.seed,
    )
    settings = _settings(args)
    _embed_once(settings, headline)
    init_ray(settings)
    bar = tqdm(total=args.iterations, unit="iter", desc=f"train tuner on {headline.dataset}/{headline.model}")

    def progress(info: dict) -> None:
        bar.update(1)
        bar.set_postfix(
            return_mean=f"{info['episode_return_mean']:.3f}",
            runs_per_s=f"{info['env_steps_per_s'] / config.control.intervals:.1f}",
        )

    folder = train_lr_control(settings, config, progress)
    bar.close()
    print(f"tuner saved to {folder}")
    return 0


def cmd_eval_tuner(args: argparse.Namespace) -> int:
    from reverie.agents.lr_control.evaluate import ARMS, EVAL_SEEDS, control_of_agent, run_arm
    from reverie.agents.lr_control.net import load_lr_control

    arms = args.arms or ["static", "cosine", "linear", "agent", "replay"]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ReverieError(f"unknown arm {unknown[0]!r}: use any of {', '.join(ARMS)}")
    if args.seeds < 1:
        raise ReverieError("--seeds must be at least 1")
    headline = _headline_config(args)
    settings = _settings(args)
    folder = settings.paths.lr_control
    agent = None
    if {"agent", "replay"} & set(arms):
        if not (folder / "config.json").is_file():
            raise ReverieError(
                f"no trained tuner in {folder}: run `reverie train tuner` (or leave out the agent and replay arms)"
            )
        agent = load_lr_control(folder)
        control = control_of_agent(folder, headline)
    else:
        control = _control_config(args, headline)
    chain = None
    if {"llm", "llm-free"} & set(arms):
        from reverie.llm import build_chain

        chain = build_chain(settings)
    _embed_once(settings, headline)
    seeds = list(EVAL_SEEDS)[: args.seeds] if args.seeds <= len(EVAL_SEEDS) else list(range(args.seeds))
    results = [run_arm(arm, control, seeds, settings.home, agent=agent, chain=chain) for arm in arms]
    rows = [
        {
            "arm": r.arm,
            "test_mean": float(r.scores.mean()),
            "test_std": float(r.scores.std()),
            "grad_steps": r.grad_steps,
            "seeds": len(r.episodes),
            "note": r.note,
        }
        for r in results
    ]
    if args.json:
        print(
            json.dumps({"dataset": headline.dataset, "model": headline.model, "budget": headline.budget, "arms": rows})
        )
        return 0
    print(
        f"{headline.dataset} / {headline.model}, {headline.budget} gradient steps per run, {len(seeds)} seeds (test accuracy):"
    )
    for row in rows:
        print(f"  {row['arm']:<9} {row['test_mean']:.4f} ± {row['test_std']:.4f}  {row['note']}")
    return 0


def cmd_tune_headline(args: argparse.Namespace) -> int:
    from reverie.actors import init_ray
    from reverie.tune.common import best_table
    from reverie.tune.headline import HeadlineSweepConfig, sweep_headline, sweep_summary

    sweep = HeadlineSweepConfig(
        scheduler=args.scheduler,
        samples=args.samples,
        headline=_headline_config(args),
        intervals=args.intervals or 10,
        seed=args.seed,
    )
    settings = _settings(args)
    _embed_once(settings, sweep.headline)
    init_ray(settings)
    grid = sweep_headline(settings, sweep)
    summary = sweep_summary(grid, sweep)
    print(best_table(grid, "val_acc", ["lr", "weight_decay", "hidden", "dropout"]))
    print(
        f"best trial: val acc {summary['val_acc']:.4f}, test acc {summary['test_acc']:.4f}, {summary['config']}; "
        f"{summary['trials']} trials, {summary['grad_steps']} gradient steps in all; results in {grid.experiment_path}"
    )
    return 0


def cmd_tune_policy(args: argparse.Namespace) -> int:
    from reverie.actors import init_ray
    from reverie.api import kg_dataset
    from reverie.tune.common import best_table
    from reverie.tune.policy import PolicySweepConfig, compare_with_defaults, sweep_policy

    kg_dataset(args.dataset)
    sweep = PolicySweepConfig(
        dataset=args.dataset,
        samples=args.samples,
        iterations=args.iterations,
        report_every=args.report_every,
        seed=args.seed,
    )
    settings = _settings(args)
    init_ray(settings)
    grid = sweep_policy(settings, sweep)
    print(best_table(grid, sweep.metric, ["lr", "entropy_coeff", "hops", "beam"]))
    compared = compare_with_defaults(grid, sweep)
    for label in ("best", "defaults"):
        part = compared[label]
        if part is not None:
            print(
                f"{label}: {part['config']}: test MRR {part['test_mrr']:.4f} (paths alone {part['test_policy_mrr']:.4f})"
            )
    print(f"results in {grid.experiment_path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.what == "tuner":
        return cmd_eval_tuner(args)
    if args.dataset is None:
        raise ReverieError("eval policy needs --dataset NAME")
    metrics = _reverie(_settings(args)).evaluate(args.dataset, split=args.split, beam=args.beam)
    if args.json:
        print(json.dumps(metrics))
        return 0

    def line(label: str, m: dict) -> str:
        text = f"  {label:<20} Hits@1 {m['hits@1']:.3f}  Hits@3 {m['hits@3']:.3f}  Hits@10 {m['hits@10']:.3f}  MRR {m['mrr']:.3f}"
        return text + (f"  AUC-PR {m['auc_pr']:.3f}" if "auc_pr" in m else "")

    print(f"{metrics['dataset']} {args.split} ({metrics['queries']} queries, filtered, tail only):")
    print(line("Reverie (arbiter)", metrics))
    print(line("policy paths alone", metrics["policy"]))
    print(line("  (paths summed)", metrics["policy_sum"]))
    if metrics["world_model"] is not None:
        print(line("world model alone", metrics["world_model"]))
    if metrics["reasoner"] is not None:
        print(line("reasoner alone", metrics["reasoner"]))
    if metrics["ece"] is not None:
        print(f"  expected calibration error of Reverie's confidence: {metrics['ece']:.3f}")
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reverie.data.kg import read_file

    facts = None
    if args.facts:
        try:
            facts, _ = read_file(args.facts)
        except OSError as exc:
            raise ReverieError(f"{args.facts}: {exc.strerror or exc}") from None
        if not facts:
            raise ReverieError(f"{args.facts}: no triples in the file")
    config = {
        k: v for k, v in (("minutes", args.minutes), ("updates", args.updates), ("ewc", args.ewc)) if v is not None
    }
    if args.no_replay:
        config["replay"] = False
    api = _reverie(_settings(args))
    while True:
        bars: list = []  # made at the first update: nothing is drawn when there is nothing to learn

        def progress(point: dict) -> None:
            if not bars:
                bars.append(tqdm(unit="update", desc="learn", disable=args.json, leave=False))
            bars[0].update(1)
            bars[0].set_postfix(success=f"{point['success']:.3f}", reward=f"{point['reward']:.3f}")

        done = api.learn(args.dataset, from_feedback=args.from_feedback, facts=facts, progress=progress, **config)
        for bar in bars:
            bar.close()
        facts = None  # folded once
        for item in done:
            if args.json:
                print(json.dumps(item), flush=True)
            elif item["version"] is None:
                print(f"{item['dataset']}: nothing new to learn from (version unchanged)", flush=True)
            else:
                u = item["update"]
                print(
                    f"{item['dataset']}: version {item['version']} from {item['ratings']} ratings and {item['facts']} new facts; "
                    f"{u['updates']} updates in {u['seconds']:.0f} s, walks reaching the answer {u['success']:.2f}, "
                    f"replay {u['replay_size']}",
                    flush=True,
                )
        if not args.watch:
            return 0
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def cmd_export(args: argparse.Namespace) -> int:
    from reverie.bundle import export_bundle

    settings = _settings(args)
    if args.home:
        settings = settings.model_copy(update={"home": Path(args.home).expanduser().resolve()})
    manifest = export_bundle(settings, args.path, force=args.force)
    size = sum(f["size"] for f in manifest.files)
    print(f"exported {settings.home} to {args.path}: {len(manifest.files)} files, {size / 1e6:.1f} MB")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from reverie.bundle import import_bundle

    home = Path(args.home).expanduser().resolve() if args.home else _settings(args).home
    manifest = import_bundle(args.path, home)
    print(f"imported {args.path} into {home}: {len(manifest.files)} files checked (Reverie {manifest.reverie_version})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import tempfile

    from tqdm import tqdm

    from reverie import compare

    if bool(args.dataset) == bool(args.questions):
        raise ReverieError("give exactly one of --dataset NAME or --questions FILE")
    if not 1 <= args.candidates <= 21:
        raise ReverieError(f"--candidates must be between 1 and 21, got {args.candidates}")
    if args.speed_prompts < 0:
        raise ReverieError(f"--speed-prompts must be at least 0, got {args.speed_prompts}")
    paths = [compare.check_side(args.a, "A"), compare.check_side(args.b, "B")]  # before Ray starts
    if args.dataset:
        questions, source = compare.dataset_questions(args.dataset, args.split, args.limit)
    else:
        questions, source = compare.file_questions(args.questions, args.limit)
    llm = args.llm if args.llm is not None else True  # as `reverie ask`: the LLM speaks unless told not to
    changes = {"alternatives": args.candidates - 1, **({"address": args.address} if args.address else {})}
    with tempfile.TemporaryDirectory(prefix="reverie-compare-") as scratch:  # bundles are imported here
        sides = [compare.open_side(path, label, Path(scratch), **changes) for path, label in zip(paths, "AB")]
        apis = [_reverie(side.settings) for side in sides]
        for side, api in zip(sides, apis):  # A whole, then B: neither's timings share the cores with the other's
            api.warm_up(llm=llm)  # so the stage timings measure the work, not start-up
            with tqdm(total=len(questions), unit="q", desc=f"compare {side.label}", disable=args.quiet) as bar:
                side.answered = api.ask_many(
                    [q.question for q in questions], progress=lambda done, _: bar.update(done - bar.n), verbalize=llm
                )
        if llm and args.speed_prompts:
            prompts = compare.speed_prompts(sides[0].answered, args.speed_prompts) or compare.speed_prompts(
                sides[1].answered, args.speed_prompts
            )
            for side, api in zip(sides, apis):
                side.llm_speed = compare.llm_speed(api.time_llm(prompts))
        report = compare.compare_report(*sides, questions, source, llm)
        for side, api in zip(sides, apis):
            if side.bundle is not None:  # its temporary home goes with the scratch folder
                api.close()
    print(json.dumps(report, indent=2) if args.json else compare.render_table(report))
    return 0


def _fractal(args: argparse.Namespace):
    from reverie.fractal import FractalAssistant

    settings = _settings(args)
    import torch

    torch.set_num_threads(1)  # a tree of small layers: a second thread only waits on the first
    return FractalAssistant(settings.home)


def cmd_fractal_train(args: argparse.Namespace) -> int:
    from reverie.data.qa import QA_GRAPHS, read_qa_file

    graphs = [] if args.graphs == ["none"] else args.graphs
    unknown = sorted(set(graphs) - set(QA_GRAPHS))
    if unknown:
        raise ReverieError(f"unknown graph {unknown[0]!r}: use {', '.join(QA_GRAPHS)} or none")
    if args.qa is not None:
        read_qa_file(args.qa)  # a bad file: one line, before anything loads
    if args.qa is None and not graphs:
        raise ReverieError("nothing to train on: give --qa FILE.json, or graphs")
    if args.epochs < 1:
        raise ReverieError(f"--epochs must be at least 1, got {args.epochs}")
    shape = {}
    if args.depth is not None:
        if not 1 <= args.depth <= 12:
            raise ReverieError(f"--depth must be between 1 and 12, got {args.depth}")
        shape["max_depth"] = args.depth
        shape["start_depth"] = min(3, args.depth)
    if args.max_nodes is not None:
        if args.max_nodes < 1:
            raise ReverieError(f"--max-nodes must be at least 1, got {args.max_nodes}")
        shape["max_nodes"] = args.max_nodes
    assistant = _fractal(args)
    from tqdm import tqdm

    bar = tqdm(total=args.epochs, desc="fractal", unit="epoch", disable=args.json, file=sys.stderr)

    def progress(point: dict) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{point['loss']:.3f}", nodes=point.get("nodes"), depth=point.get("depth"))

    report = assistant.train(
        qa_file=args.qa,
        graphs=graphs,
        epochs=args.epochs,
        seed=args.seed,
        fractal=shape,
        resume=args.resume,
        progress=progress,
    )
    bar.close()
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"saved_to": str(assistant.home.fractal), **asdict(report)}))
        return 0
    print(
        f"fractal network saved to {assistant.home.fractal}: {report.pairs} pairs, {report.epochs} epochs, "
        f"loss {report.loss:.3f}, {report.nodes} nodes, depth {report.depth}, {report.weights:,} weights"
    )
    if report.exact_match is not None:
        print(
            f"held out ({report.held_out} pairs): exact match {report.exact_match:.1%}, token F1 "
            f"{report.token_f1:.1%}, parroting {report.parroting:.1%}"
        )
    print(f"plot: {assistant.home.fractal_plot}")
    return 0


FRACTAL_CHAT_HELP = "/temp T sets the temperature (0 to 2), /help shows this, /quit or /bye ends"


def cmd_fractal_chat(args: argparse.Namespace) -> int:
    if not 0.0 <= args.temperature <= 2.0:
        raise ReverieError(f"--temperature must be between 0 and 2, got {args.temperature}")
    assistant = _fractal(args)
    assistant.model()  # no network: one line now, not at the first message
    interactive = sys.stdin.isatty()
    temperature = args.temperature
    if interactive:
        print(f"fractal network ({FRACTAL_CHAT_HELP})")
    turn = 0
    while True:
        try:
            line = input(">>> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            print()
            break
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, value = text.partition(" ")
            if command in ("/quit", "/bye", "/exit"):
                break
            if command in ("/help", "/?"):
                print(FRACTAL_CHAT_HELP)
            elif command == "/temp":
                try:
                    number = float(value)
                    if not 0.0 <= number <= 2.0:
                        raise ValueError
                    temperature = number
                    print(f"temperature {temperature:g}")
                except ValueError:
                    print(f"reverie: /temp takes a number from 0 to 2, not {value!r}", file=sys.stderr)
            else:
                print(f"reverie: unknown command {command}: {FRACTAL_CHAT_HELP}", file=sys.stderr)
            continue
        turn += 1
        seed = None if args.seed is None else args.seed + turn
        print(assistant.reply(text, temperature=temperature, seed=seed), flush=True)
    return 0


def cmd_fractal_talk(args: argparse.Namespace) -> int:
    from reverie.fractal import talk

    if args.turns < 1:
        raise ReverieError(f"--turns must be at least 1, got {args.turns}")
    if args.delay < 0:
        raise ReverieError(f"--delay must be 0 or more, got {args.delay}")
    if not args.server.startswith(("http://", "https://")):
        raise ReverieError(f"--server is a URL (http://host:port), not {args.server!r}")
    assistant = _fractal(args)
    lines = []

    def show(line) -> None:
        lines.append(line.as_dict())
        if args.json:
            print(json.dumps(line.as_dict()), flush=True)
        else:
            print(f"[{line.speaker}] {line.text}", flush=True)

    try:
        talk(
            assistant,
            args.server,
            args.model,
            turns=args.turns,
            delay=args.delay,
            opening=args.opening,
            api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
            temperature=args.temperature,
            on_line=show,
        )
    finally:
        if args.transcript:
            from reverie.atomic import atomic_write

            atomic_write(args.transcript, "".join(json.dumps(line) + "\n" for line in lines).encode())
    return 0


def cmd_fractal_save(args: argparse.Namespace) -> int:
    path = _fractal(args).save(args.path)
    print(f"fractal network saved to {path}")
    return 0


def cmd_fractal_load(args: argparse.Namespace) -> int:
    assistant = _fractal(args)
    status = assistant.load(args.path)
    print(
        f"fractal network loaded from {args.path} into {assistant.home.fractal}: {status['nodes']} nodes, "
        f"depth {status['depth']}, {status['weights']:,} weights"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from reverie.serve.lifecycle import serve_until_stopped

    settings = _settings(args)
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.learn:
        updates["learn"] = True
    serve_until_stopped(settings.model_copy(update=updates), insecure=args.insecure)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reverie", description="Reverie: ask a knowledge graph, get an answer with its chain."
    )
    parser.add_argument("--address", help="Ray cluster address to connect to (default: start a local single-node Ray)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="add triples from a file, a dataset folder, or a named dataset")
    p.add_argument("path", nargs="?", help="a .tsv/.txt/.csv/.jsonl file, or a folder with train/dev/test.txt")
    p.add_argument("--dataset", help="a named dataset: world, umls, kinships, nations")
    p.add_argument(
        "--images",
        metavar="FILE.jsonl",
        help='images beside a JSONL of {"image", "caption"|"entity"} or {"what", "action", "result"} lines (needs `reverie train clip` first)',
    )
    p.add_argument("--json", action="store_true", help="print the ingest report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--local", action="store_true", help=LOCAL_HELP)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", help="ask a question")
    p.add_argument("question")
    p.add_argument("--rollouts", "--branches", type=int, help="dream rollouts (default: REVERIE_ROLLOUTS, 64)")
    p.add_argument("--hops", type=int, help="maximum hops per rollout (default: REVERIE_HOPS, 3)")
    p.add_argument("--seed", type=int, help="seed for the rollouts")
    p.add_argument("--no-llm", action="store_true", help="skip the LLM; say the answer with a template")
    p.add_argument(
        "--image", metavar="PATH", help="an image the question is about: it links to an entity, the question's subject"
    )
    p.add_argument("--json", action="store_true", help="print the whole Verdict as JSON")
    p.add_argument("--local", action="store_true", help=LOCAL_HELP)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", help="an interactive session, as `ollama run` (type /? in it for its commands)")
    p.add_argument("--no-stream", action="store_true", help="print each answer whole rather than word by word")
    p.add_argument("--verbose", action="store_true", help="print timings and tokens/s after each answer")
    p.add_argument("--seed", type=int, help="seed for the rollouts and the LLM (as /set parameter seed)")
    p.add_argument("--system", metavar="TEXT", help="the system message of the LLM's chat replies")
    p.add_argument("--local", action="store_true", help=LOCAL_HELP)
    p.set_defaults(func=cmd_chat)

    lc = LearnerConfig()
    p = sub.add_parser(
        "learn",
        help="go on training the path policy from use: ratings, new facts, replay and EWC; publishes a new version",
    )
    p.add_argument("--dataset", help="the policy to update (default: every trained policy)")
    p.add_argument(
        "--from-feedback",
        action="store_true",
        help="learn from the ratings added to the feedback dataset since the last update (and refit the reward model)",
    )
    p.add_argument(
        "--facts", metavar="FILE", help="fold these triples into the policy's graph first (.tsv/.csv/.jsonl)"
    )
    p.add_argument("--watch", action="store_true", help="keep following the feedback dataset and folded facts")
    p.add_argument("--interval", type=float, default=60.0, help="--watch: seconds between looks (default 60)")
    p.add_argument("--minutes", type=float, help="stop each update after this much time")
    p.add_argument("--updates", type=int, help=f"gradient updates per learner update (default {lc.updates})")
    p.add_argument("--ewc", type=float, help=f"strength of the EWC penalty, 0 to turn it off (default {lc.ewc:g})")
    p.add_argument(
        "--no-replay", action="store_true", help="use each experience once instead of replaying it by priority"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per policy updated")
    p.set_defaults(func=cmd_learn)

    p = sub.add_parser("serve", help="serve the HTTP API with Ray Serve")
    p.add_argument("--host", help="interface to bind (default: REVERIE_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: REVERIE_PORT, 8000)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback --host without REVERIE_API_KEY (anyone who reaches it can read and write)",
    )
    p.add_argument(
        "--learn",
        action="store_true",
        help="run the online learner beside the service: ratings and new facts train new policy versions "
        "(every REVERIE_LEARN_INTERVAL_S, 60 s), answered with at once",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("train", help="train a model")
    train_sub = p.add_subparsers(dest="what", required=True)
    t = train_sub.add_parser("policy", help="train the path policy with RLlib PPO")
    t.add_argument(
        "--dataset", required=True, help="a dataset name (umls, kinships, nations) or a folder with train/dev/test.txt"
    )
    d = POLICY_DEFAULTS
    t.add_argument("--iterations", type=int, default=d.iterations, help=f"PPO iterations (default {d.iterations})")
    t.add_argument(
        "--minutes",
        type=float,
        default=d.minutes,
        help="stop after this much training time instead (--iterations stays the cap)",
    )
    t.add_argument(
        "--envs",
        "--walks",
        type=int,
        default=d.envs,
        help=f"walks stepped together by the vectorised env (default {d.envs})",
    )
    t.add_argument("--hops", type=int, default=d.env.hops, help=f"hops per walk (default {d.env.hops})")
    t.add_argument(
        "--experts",
        type=int,
        default=d.net.experts,
        help=f"dream experts mixed by a gate over the query (default {d.net.experts}; the design notes' 4)",
    )
    t.add_argument(
        "--imagined",
        type=int,
        default=d.env.imagined_edges,
        help=f"imagined edges per entity proposed by the world model (default {d.env.imagined_edges})",
    )
    t.add_argument(
        "--entity-features",
        action="store_true",
        default=d.net.use_entities,
        help="let the policy see entity embeddings (MINERVA does for Countries)",
    )
    t.add_argument(
        "--no-world-model", action="store_true", help="no world model: exact-answer reward only, no arbiter help"
    )
    t.add_argument(
        "--shaper",
        default=d.env.shaper,
        help=f"whose belief rewards a wrong answer: world-model or reasoner (after `reverie train reasoner`; default {d.env.shaper})",
    )
    t.add_argument(
        "--teacher",
        choices=["auto", "reasoner", "none"],
        default=d.teacher.kind,
        help="the graph reasoner's paths as demonstrations: cloned before PPO, pulled towards during it "
        f"(auto: when `reverie train reasoner` made one; default {d.teacher.kind})",
    )
    t.add_argument(
        "--clone-epochs",
        type=int,
        default=d.teacher.clone_epochs,
        help=f"behaviour-cloning passes over the reasoner's paths before PPO (default {d.teacher.clone_epochs})",
    )
    t.add_argument(
        "--teacher-weight",
        type=float,
        default=d.teacher.weight,
        help=f"weight of the pull towards the reasoner's paths at PPO's start, annealed to 0 (default {d.teacher.weight:g})",
    )
    t.add_argument("--seed", type=int, default=d.seed)
    t.set_defaults(func=cmd_train_policy)

    r = ReasonerConfig()
    t = train_sub.add_parser("reasoner", help="train the graph reasoner (path-based message passing) of a dataset")
    t.add_argument(
        "--dataset", required=True, help="a dataset name (umls, kinships, nations) or a folder with train/dev/test.txt"
    )
    t.add_argument(
        "--minutes",
        type=float,
        default=r.minutes,
        help="stop after this much training time (the best dev checkpoint is kept)",
    )
    t.add_argument(
        "--epochs", type=int, default=r.epochs, help=f"passes over the training queries (default {r.epochs})"
    )
    t.add_argument(
        "--layers",
        type=int,
        default=r.layers,
        help=f"rounds of message passing: the longest path it reads (default {r.layers})",
    )
    t.add_argument("--dim", type=int, default=r.dim, help=f"width of node states (default {r.dim})")
    t.add_argument("--heads", type=int, default=r.heads, help=f"attention heads (default {r.heads})")
    t.add_argument("--batch-size", type=int, default=r.batch_size, help=f"queries per step (default {r.batch_size})")
    t.add_argument("--lr", type=float, default=r.lr, help=f"Adam's learning rate (default {r.lr:g})")
    t.add_argument(
        "--hide",
        default=r.hide,
        help="what a training query may not read: fact (its own fact) or relation "
        "(every edge of its relation at the head; for Countries S2/S3)",
    )
    t.add_argument(
        "--max-nodes",
        type=int,
        default=r.max_nodes,
        help="at most this many nodes per query send each round, "
        "those of highest learned priority (A*Net's pruning, for large graphs; default: all)",
    )
    t.add_argument("--seed", type=int, default=r.seed)
    t.set_defaults(func=cmd_train_reasoner)

    from reverie.encoders.image_training import ClipTrainConfig

    k = ClipTrainConfig()
    t = train_sub.add_parser(
        "clip", help="train the image tower on renders of the built-in world, against the locked text encoder"
    )
    t.add_argument(
        "--backbone",
        default=k.backbone,
        help=f"clip (open_clip ViT), resnet (open_clip ResNet) or lite (small CNN) (default {k.backbone})",
    )
    t.add_argument(
        "--epochs", type=int, help=f"passes over the renders, at most (default {k.epochs}, or with --minutes no cap)"
    )
    t.add_argument(
        "--minutes", type=float, default=k.minutes, help="stop after this much training time (--epochs stays the cap)"
    )
    t.add_argument(
        "--renders",
        type=int,
        default=k.renders_per_entity,
        help=f"training renders per entity (default {k.renders_per_entity})",
    )
    t.add_argument(
        "--image-size", type=int, default=k.image_size, help=f"input side in pixels (default {k.image_size})"
    )
    t.add_argument(
        "--codebook-size",
        type=int,
        default=k.codebook_size,
        help=f"image tokens: k-means centroids (default {k.codebook_size})",
    )
    t.add_argument(
        "--out",
        help="where to save the checkpoint (default: REVERIE_CLIP_WEIGHTS, else REVERIE_HOME/models/clip/image_tower.pt)",
    )
    t.add_argument("--seed", type=int, default=k.seed)
    t.set_defaults(func=cmd_train_clip)

    t = train_sub.add_parser(
        "memory", help="train the conversational memory (a GRU that resolves follow-ups) on generated conversations"
    )
    t.add_argument(
        "--conversations", type=int, default=1500, help="generated 5-turn conversations per graph (default 1500)"
    )
    t.add_argument(
        "--graphs", nargs="+", default=["world", "umls", "kinships"], help="graphs the conversations are about"
    )
    t.add_argument("--epochs", type=int, default=12, help="passes over the follow-ups (default 12)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="where to save it (default: REVERIE_HOME/models/memory)")
    t.add_argument("--json", action="store_true", help="print the report as JSON")
    t.set_defaults(func=cmd_train_memory)

    t = train_sub.add_parser("hub", help="train the message router: the spiking hub, or the MLP of the same size")
    t.add_argument("--router", default="spiking", help="spiking (the hub) or mlp (default spiking)")
    t.add_argument("--epochs", type=int, default=40, help="passes over the routing set (default 40)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="where to save it (default: REVERIE_HOME/models/hub/ROUTER)")
    t.add_argument("--json", action="store_true", help="print the router's card as JSON")
    t.set_defaults(func=cmd_train_hub)

    t = train_sub.add_parser("tuner", help="train the training-control agent (RLlib PPO) on headline-classifier runs")
    _headline_options(t, budget_help="gradient steps per training run")
    c = TUNER_DEFAULTS
    t.add_argument("--intervals", type=int, help=f"decisions per run (default {c.control.intervals})")
    t.add_argument("--iterations", type=int, default=c.iterations, help=f"PPO iterations (default {c.iterations})")
    t.add_argument(
        "--minutes",
        type=float,
        default=c.minutes,
        help="stop after this much training time instead (--iterations stays the cap)",
    )
    t.add_argument("--envs", type=int, default=c.envs, help=f"training runs stepped together (default {c.envs})")
    t.add_argument("--seed", type=int, default=c.seed)
    t.set_defaults(func=cmd_train_tuner)

    t = train_sub.add_parser(
        "student", help="distil the teacher LLM into a small student LLM (the 'student' backend) on the home's graphs"
    )
    t.add_argument(
        "--teacher", choices=["local", "ollama"], default="local", help="the LLM that teaches (default local)"
    )
    t.add_argument(
        "--graphs",
        nargs="+",
        default=["world", "umls", "kinship"],
        help="graphs whose facts make the prompts: world, umls, kinship, home (default world umls kinship)",
    )
    t.add_argument("--per-graph", type=int, default=1200, help="answer-sentence prompts per graph (default 1200)")
    t.add_argument("--minutes", type=float, default=12.0, help="the time the distillation may take (default 12)")
    t.add_argument(
        "--kd-weight", type=float, default=0.5, help="weight of token-level KD beside the sentences (default 0.5)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--cached-only",
        action="store_true",
        help="learn from the teacher replies already cached in the home; ask the teacher nothing new",
    )
    t.add_argument(
        "--augment",
        type=int,
        default=8,
        help="each chain-grounded teacher sentence also says this many other prompts in its words (default 8; 0: none)",
    )
    t.add_argument("--json", action="store_true", help="print the student's card as JSON")
    t.set_defaults(func=cmd_train_student)

    p = sub.add_parser(
        "eval", help="measure a trained policy (filtered tail ranking) or the tuner (against static schedules)"
    )
    p.add_argument(
        "what", nargs="?", choices=["policy", "tuner"], default="policy", help="what to measure (default policy)"
    )
    p.add_argument(
        "--dataset",
        help="policy: a dataset name or folder, as for train; tuner: a headline dataset (default healthtweets)",
    )
    p.add_argument("--split", choices=["test", "dev"], default="test", help="policy: the split to rank")
    p.add_argument(
        "--beam", type=int, default=256, help="policy: beam width of the search (default 256, as training tunes with)"
    )
    p.add_argument("--model", help="tuner: the classifier, mlp or cnn (default mlp)")
    p.add_argument("--embedder", help="tuner: minilm or smollm2 (default minilm)")
    p.add_argument("--budget", type=int, help="tuner: gradient steps per run (default 400)")
    p.add_argument("--intervals", type=int, help="tuner: decisions per run when no agent is compared")
    p.add_argument(
        "--arms",
        nargs="+",
        help="tuner: which controllers (default static cosine linear agent replay; also llm, llm-free, random)",
    )
    p.add_argument("--seeds", type=int, default=5, help="tuner: runs per arm (default 5)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (policy: hits@1, hits@3, hits@10, mrr as fractions, auc_pr for Countries, 'policy' (best path), 'policy_sum' (all paths summed), 'world_model' and 'reasoner' breakdowns and 'ece'; tuner: each arm's test accuracy)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tune", help="sweep hyperparameters with Ray Tune")
    tune_sub = p.add_subparsers(dest="what", required=True)
    t = tune_sub.add_parser("headline", help="the headline classifier's lr, weight decay, hidden size and dropout")
    t.add_argument("--scheduler", default="asha", help="asha, pbt or pb2 (default asha)")
    t.add_argument("--samples", type=int, default=8, help="trials, or the population (default 8)")
    _headline_options(t, budget_help="gradient steps per trial")
    t.add_argument(
        "--intervals", type=int, help="reports per trial: ASHA's rungs, PBT's perturbation points (default 10)"
    )
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_tune_headline)
    t = tune_sub.add_parser(
        "policy", help="the path policy's PPO learning rate, entropy, hops and beam (ASHA), against the defaults"
    )
    t.add_argument("--dataset", required=True, help="a dataset name or folder, as for train policy")
    t.add_argument("--samples", type=int, default=8, help="trials, the defaults' included (default 8)")
    t.add_argument("--iterations", type=int, default=60, help="PPO iterations per trial (default 60)")
    t.add_argument("--report-every", type=int, default=10, help="PPO iterations between dev evaluations (default 10)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_tune_policy)

    p = sub.add_parser("export", help="pack this home into a bundle folder another machine imports")
    p.add_argument("path", help="the bundle folder to write (new or empty)")
    p.add_argument("--home", help="the home to export (default: REVERIE_HOME)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at PATH")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="import a bundle folder into a new or empty home (checked whole first)")
    p.add_argument("path", help="the bundle folder")
    p.add_argument("--home", help="the home to create (default: REVERIE_HOME); it must not exist or be empty")
    p.set_defaults(func=cmd_import)

    from reverie.compare import SPEED_PROMPTS

    p = sub.add_parser(
        "compare", help="ask two homes (or bundles) the same questions: agreement, MRR, faithfulness, latency, size"
    )
    p.add_argument("a", metavar="A", help="a home (REVERIE_HOME folder) or a bundle folder (`reverie export`)")
    p.add_argument("b", metavar="B", help="the other home or bundle")
    p.add_argument("--dataset", help="ask a dataset's questions: world, umls, kinships, nations or a folder")
    p.add_argument("--split", choices=["test", "dev"], default="test", help="the KG split to ask (default test)")
    p.add_argument(
        "--questions",
        metavar="FILE",
        help='ask these: one question a line, or JSON lines {"question": ..., "answer": ...} (answer optional)',
    )
    p.add_argument("--limit", type=int, help="ask only the first N questions")
    p.add_argument(
        "--llm",
        action=argparse.BooleanOptionalAction,
        help="put the answers into words with each side's LLM (default) or with the template (--no-llm)",
    )
    p.add_argument(
        "--candidates", type=int, default=10, help="ranked answers each verdict keeps, for MRR and Hits@10 (default 10)"
    )
    p.add_argument(
        "--speed-prompts",
        type=int,
        default=SPEED_PROMPTS,
        help=f"verbalize prompts each side's LLM is timed on for tokens/s (default {SPEED_PROMPTS}; 0: not timed)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON (schema in reverie/compare.py)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("fractal", help="the fractal network of seed 001: train it on Q&A, chat, talk, save, load")
    fractal_sub = p.add_subparsers(dest="what", required=True)
    f = fractal_sub.add_parser("train", help="train it on Q&A pairs: a JSON file and pairs generated from the graphs")
    f.add_argument("--qa", help='a JSON file: [{"question": ..., "answer": ...}, ...] (seed 001\'s format)')
    f.add_argument(
        "--graphs", nargs="+", default=["world", "umls"], help="graphs to generate pairs from (world umls; none)"
    )
    f.add_argument("--epochs", type=int, default=40, help="passes over the pairs (default 40)")
    f.add_argument("--depth", type=int, help="the deepest the tree may grow (default 7)")
    f.add_argument("--max-nodes", type=int, help="the most nodes the tree may have (default 24)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--resume", action="store_true", help="go on training the saved network instead of a new one")
    f.add_argument("--json", action="store_true", help="print the report as JSON, no progress bar")
    f.set_defaults(func=cmd_fractal_train)
    f = fractal_sub.add_parser("chat", help="chat with it (piped input: one line a turn)")
    f.add_argument("--temperature", type=float, default=0.0, help="0 answers greedily (default); up to 2")
    f.add_argument("--seed", type=int, help="seeds sampling, so a session replays the same")
    f.set_defaults(func=cmd_fractal_chat)
    f = fractal_sub.add_parser("talk", help="hold a conversation with another OpenAI-compatible server's model")
    f.add_argument("--server", required=True, help="the other server, e.g. http://127.0.0.1:1234 (LM Studio)")
    f.add_argument("--model", required=True, help="the other server's model")
    f.add_argument("--turns", type=int, default=5, help="exchanges (default 5)")
    f.add_argument("--delay", type=float, default=0.0, help="seconds to wait between messages (default 0)")
    f.add_argument("--opening", default="Hello! What do you know about glass?", help="the first message")
    f.add_argument("--temperature", type=float, default=0.7, help="the fractal network's temperature (default 0.7)")
    f.add_argument("--api-key", help="the other server's key (default: OPENAI_API_KEY)")
    f.add_argument("--transcript", help="also write the transcript here (JSON lines)")
    f.add_argument("--json", action="store_true", help="print each line as JSON")
    f.set_defaults(func=cmd_fractal_talk)
    f = fractal_sub.add_parser("save", help="copy the home's network to a file")
    f.add_argument("path")
    f.set_defaults(func=cmd_fractal_save)
    f = fractal_sub.add_parser("load", help="make a saved network the home's (a file that is not one is refused)")
    f.add_argument("path")
    f.set_defaults(func=cmd_fractal_load)

    p = sub.add_parser("stats", help="count the graph's entities, relations and triples")
    p.add_argument("--local", action="store_true", help=LOCAL_HELP)
    p.set_defaults(func=cmd_stats)
    return parser


def _headline_options(parser: argparse.ArgumentParser, budget_help: str) -> None:
    parser.add_argument("--dataset", help="healthtweets, news or r8 (default healthtweets)")
    parser.add_argument("--model", help="the classifier: mlp or cnn (default mlp)")
    parser.add_argument("--embedder", help="minilm or smollm2 (default minilm)")
    parser.add_argument("--budget", type=int, help=f"{budget_help} (default 400)")


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"])
    return f"{field}: {err['msg']}" if field else err["msg"]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ReverieError as exc:
        print(f"reverie: error: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"reverie: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"reverie: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
