"""Cost against graph size: synthetic graphs of 10k, 100k and 1M triples and WN18RR, each with
every vector index (Qdrant Edge, qdrant-client's embedded store).

For each graph, through the Pipeline on a local Ray as a user runs it:
- ingest with the first index: triples/s and where the time goes (parse, plan, encode, graph, snapshot,
  vector index, calibration), against the text encoder's own rate on the same texts (a seeded sample
  of them, encoded in this process with the same batch size);
- for every index: the index built from the snapshot (the other indexes' "vector write"), the home's
  load time and resident memory in a fresh process (GraphStore.open_index: snapshot, index, the
  link and walk structures), and `ask` latency by stage over seeded questions, verbalize off.

The questions are "What is <head> <relation>?" for seeded facts; "right" counts top answers (sure
or not) among the graph's tails for that head and relation, "sure" the verdicts that were sure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import ray

from bench.common import RESULTS, SHARED_KG, fresh_home, write_table
from reverie.actors import NAMESPACE
from reverie.config import Settings
from reverie.encoders import TextEncoder
from reverie.encoders.text import display, entity_text, relation_texts
from reverie.pipeline import Pipeline
from reverie.schemas import Entity, Query

STAGES = ["encode", "link", "retrieve", "dream", "arbitrate"]
HAS_INDEX_SETTING = "vector_index" in Settings.model_fields  # False on the code before bench/scale.py
MAX_NODES: int | None = None  # --max-nodes

LOAD = """
import json, os, sys, time
import psutil
from reverie.config import Settings
from reverie.graph_store import GraphStore
import qdrant_client
try:
    import qdrant_edge
except ImportError:
    pass
settings = Settings(**json.loads(sys.argv[1]))
process = psutil.Process()
before = process.memory_info().rss
start = time.perf_counter()
store = GraphStore(settings)
store.open_index()
seconds = time.perf_counter() - start
after = process.memory_info().rss
store.close()
print(json.dumps({"seconds": seconds, "rss_bytes": after - before}))
"""


def settings_for(home: Path, index: str, calibrate: bool) -> dict:
    fields: dict = {"home": str(home)}
    if HAS_INDEX_SETTING:
        fields["vector_index"] = index
    if not calibrate:
        fields["calibration_questions"] = 0
    if MAX_NODES:
        fields["max_subgraph_nodes"] = MAX_NODES
    return fields


def load_in_fresh_process(fields: dict) -> dict:
    """Seconds and resident bytes to open a home (snapshot, index, link and walk structures)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", LOAD, json.dumps(fields)], capture_output=True, text=True, env=env, cwd=os.getcwd()
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def dataset(name: str):
    """(dataset, parse seconds)."""
    start = time.perf_counter()
    if name == "wn18rr":
        from reverie.data.kg import read_kg_folder

        data = read_kg_folder(SHARED_KG / "wn18rr")
    else:
        from reverie.data.synthetic import synthetic_kg

        data = synthetic_kg(int(name))
    return data, time.perf_counter() - start


def questions(triples, count: int, seed: int = 0) -> list[tuple[str, set[str]]]:
    """Seeded (question, right answers) from the graph's facts."""
    tails: dict[tuple[str, str], set[str]] = {}
    for t in triples:
        tails.setdefault((t.head, t.relation), set()).add(t.tail)
    rng = random.Random(seed)
    keys = rng.sample(sorted(tails), min(count, len(tails)))
    return [(f"What is {display(h)} {display(r)}?", tails[h, r]) for h, r in keys]


def stop(pipeline: Pipeline) -> None:
    """Close the store (its index lock goes with it) and end this home's actors."""
    try:
        ray.get(pipeline.services.store.close.remote())
    finally:
        pipeline.services.stop()
    time.sleep(1.0)


def ask_rounds(targets: dict[str, tuple[Pipeline, list[tuple[str, set[str]]]]], block: int = 5) -> dict:
    """Latency by stage of every target's questions, the targets taking turns `block` questions at a
    time, so that each sees the machine as loaded as the others (it is shared)."""
    timings = {key: {s: [] for s in [*STAGES, "total"]} for key in targets}
    right = dict.fromkeys(targets, 0)
    sure = dict.fromkeys(targets, 0)
    for pipeline, asked in targets.values():
        pipeline.services.warm_up(llm=False)
        pipeline.answer(Query(question=asked[0][0], seed=0, verbalize=False))  # first-use costs aside
    longest = max(len(asked) for _, asked in targets.values())
    for first in range(0, longest, block):
        for key, (pipeline, asked) in targets.items():
            for i in range(first, min(first + block, len(asked))):
                question, answers = asked[i]
                start = time.perf_counter()
                verdict = pipeline.answer(Query(question=question, seed=i, verbalize=False))
                timings[key]["total"].append((time.perf_counter() - start) * 1000)
                for stage in STAGES:
                    timings[key][stage].append(verdict.timings_ms[stage])
                best = verdict.candidates[0].answer if verdict.candidates else None
                right[key] += best in answers  # the top answer, sure or not: calibration decides only `sure`
                sure[key] += bool(verdict.sure)
    return {
        key: {
            "p50_ms": {s: float(np.percentile(v, 50)) for s, v in timings[key].items()},
            "p99_ms": {s: float(np.percentile(v, 99)) for s, v in timings[key].items()},
            "right": right[key],
            "sure": sure[key],
            "questions": len(targets[key][1]),
        }
        for key in targets
    }


def encoder_rate(encoder: TextEncoder, data, sample: int) -> tuple[float, int]:
    """(texts/s of the encoder on a seeded sample of the texts the ingest embeds, how many texts it embeds)."""
    names = dict.fromkeys(n for t in data.graph for n in (t.head, t.tail))
    texts = [entity_text(Entity(name=n)) for n in names]
    texts += [w for r in dict.fromkeys(t.relation for t in data.graph) for w in relation_texts(r)]
    picked = random.Random(0).sample(texts, min(sample, len(texts)))
    best = float("inf")
    for _ in range(2):  # the better of two: the machine is shared
        start = time.perf_counter()
        encoder.encode(picked)
        best = min(best, time.perf_counter() - start)
    return len(picked) / best, len(texts)


def ingest(name: str, indexes: list[str], count: int, sample: int, calibrate: bool, encoder: TextEncoder):
    """Ingest a graph with the first index, build the others from its snapshot, open each in a fresh
    process: (its row, the home of each index, its questions)."""
    data, parse_s = dataset(name)
    raw_before, texts = encoder_rate(encoder, data, sample)  # before Ray's actors take the cores
    load_before = os.getloadavg()[0]
    first, home = indexes[0], fresh_home(f"scale-{name}-{indexes[0]}")
    pipeline = Pipeline(Settings(**settings_for(home, first, calibrate)))
    pipeline.services.warm_up(llm=False)  # the encoder's model load and the store's start are not ingest
    report = pipeline.ingest_dataset(data)
    load_after = os.getloadavg()[0]
    stats = pipeline.stats()
    stop(pipeline)
    raw_after, _ = encoder_rate(encoder, data, sample)
    asked = questions(data.graph, count)
    del data
    row: dict = {
        "graph": name,
        "triples": stats.triples,
        "entities": stats.entities,
        "relations": stats.relations,
        "texts": texts,
        "parse_s": parse_s,
        "ingest_s": report.seconds,
        "timings_s": report.timings_s,
        "triples_per_s": stats.triples / report.seconds,
        "encoder_texts_per_s": (raw_before + raw_after) / 2,
        "encoder_texts_per_s_before_after": [raw_before, raw_after],
        "snapshot_bytes": (home / "graph" / "snapshot.npz").stat().st_size,
        "load_average": [load_before, load_after],  # other work on the machine, before and after ingest
        "indexes": {},
    }
    homes = {first: home}
    for index in indexes[1:]:
        homes[index] = fresh_home(f"scale-{name}-{index}")
        (homes[index] / "graph").mkdir(parents=True)
        for part in ("snapshot.npz", "calibration.json"):
            if (home / "graph" / part).exists():
                shutil.copy(home / "graph" / part, homes[index] / "graph" / part)
        build = load_in_fresh_process(settings_for(homes[index], index, calibrate))  # builds it from the snapshot
        row["indexes"][index] = {"build_s": build["seconds"]}
    for index, folder in homes.items():
        row["indexes"].setdefault(index, {"build_s": None})["load"] = load_in_fresh_process(
            settings_for(folder, index, calibrate)
        )
    row["indexes"] = {index: row["indexes"][index] for index in indexes}  # the first index first
    print(json.dumps(row, indent=1), flush=True)
    return row, homes, asked


def baseline_rss(index: str) -> int:
    """Resident bytes a home of 100 facts takes to open: what a home costs before its size counts."""
    from reverie.data.synthetic import synthetic_kg

    home = fresh_home(f"scale-baseline-{index}")
    pipeline = Pipeline(Settings(**settings_for(home, index, calibrate=False)))
    pipeline.ingest_dataset(synthetic_kg(100))
    stop(pipeline)
    loaded = load_in_fresh_process(settings_for(home, index, calibrate=False))
    shutil.rmtree(home, ignore_errors=True)
    return int(loaded["rss_bytes"])


def before_rows(before: dict, header: list[str]) -> list[list]:
    """The rows of a run on older code, marked as such (its bytes/triple with its own fixed part)."""
    _, rows = table(before["rows"], before.get("fixed_rss_bytes", {}))
    return [[f"{row[0]} (before)", *row[1:-2], "n/a", "n/a"] for row in rows]  # it counted sure answers only


def goals(rows: list[dict], fixed: dict[str, int]) -> str:
    """The issue's goals, each against the figures above (the first index's rows)."""
    by = {r["graph"]: r for r in rows}
    lines = ["Goals (first index):"]
    big, small = by.get("1000000"), by.get("10000")
    if big:
        t = big["triples"]
        encoder_bound = t * big["encoder_texts_per_s"] / big["texts"]
        target = min(10_000, encoder_bound / 1.5)
        rate = t / big["ingest_s"]
        lines.append(
            f"- ingest at 1M: {rate:,.0f} triples/s against min(10,000, encoder-bound {encoder_bound:,.0f} / 1.5) = "
            f"{target:,.0f}: {'met' if rate >= target else 'not met'} (ingest time {big['ingest_s'] * encoder_bound / t:.2f}x "
            f"the encoder's own; {big['ingest_s'] / big['timings_s']['encode']:.2f}x the encode inside the ingest)"
        )
        first = next(iter(big["indexes"].values()))
        lines.append(
            f"- loading the 1M home: {first['load']['seconds']:.1f} s (goal 30 s): "
            f"{'met' if first['load']['seconds'] <= 30 else 'not met'}"
        )
    if big and small:
        a, b = next(iter(small["indexes"].values())), next(iter(big["indexes"].values()))
        ratio = b["p50_ms"]["total"] / a["p50_ms"]["total"]
        lines.append(
            f"- ask p50 at 1M {b['p50_ms']['total']:.0f} ms against {a['p50_ms']['total']:.0f} ms at 10k: {ratio:.1f}x "
            f"(goal 2x): {'met' if ratio <= 2 else 'not met'}"
        )
    per = []
    for r in rows:
        index, run = next(iter(r["indexes"].items()))
        per.append(f"{r['graph']} {(run['load']['rss_bytes'] - fixed.get(index, 0)) / r['triples']:.0f}")
    lines.append(f"- resident bytes per triple past a 100-fact home's: {', '.join(per)}")
    return "\n".join(lines) + "\n"


def table(rows: list[dict], fixed: dict[str, int]) -> tuple[list[str], list[list]]:
    header = [
        "graph",
        "index",
        "triples",
        "entities",
        "parse s",
        "plan s",
        "encode s",
        "graph s",
        "snapshot s",
        "vectors s",
        "ingest s",
        "triples/s",
        "encoder-bound triples/s",
        "ingest / encoder",
        "calibrate s",
        "snapshot MB",
        "load s",
        "RSS MB",
        "bytes/triple",
        "link p50/p99",
        "retrieve p50/p99",
        "dream p50/p99",
        "arbitrate p50/p99",
        "ask p50/p99",
        "right",
        "sure",
    ]
    out = []
    for r in rows:
        t = r["timings_s"]
        encoder_bound = r["triples"] * r["encoder_texts_per_s"] / r["texts"]
        for k, (index, run) in enumerate(r["indexes"].items()):
            vectors = t.get("write_vectors", float("nan")) if k == 0 else run["build_s"]
            ingest = r["ingest_s"] if k == 0 else r["ingest_s"] - t.get("write_vectors", 0.0) + run["build_s"]
            p50, p99 = run["p50_ms"], run["p99_ms"]
            out.append(
                [
                    r["graph"],
                    index + ("" if k == 0 else " (index built from the snapshot)"),
                    f"{r['triples']:,}",
                    f"{r['entities']:,}",
                    f"{r['parse_s']:.1f}",
                    f"{t['plan']:.1f}",
                    f"{t['encode']:.1f}",
                    *(
                        (f"{t['write_graph']:.1f}", f"{t['write_snapshot']:.1f}", f"{vectors:.1f}")
                        if "write_graph" in t
                        else ("-", "-", f"{t['write']:.1f} (all writes)")
                    ),
                    f"{ingest:.1f}",
                    f"{r['triples'] / ingest:,.0f}",
                    f"{encoder_bound:,.0f}",
                    f"{ingest / (r['texts'] / r['encoder_texts_per_s']):.2f}",
                    f"{t.get('calibrate', 0):.1f}",
                    f"{r['snapshot_bytes'] / 1e6:.1f}",
                    f"{run['load']['seconds']:.1f}",
                    f"{run['load']['rss_bytes'] / 1e6:.0f}",
                    f"{(run['load']['rss_bytes'] - fixed.get(index, 0)) / r['triples']:.0f}",
                    *(f"{p50[s]:.1f} / {p99[s]:.1f}" for s in ("link", "retrieve", "dream", "arbitrate", "total")),
                    f"{run['right']}/{run['questions']}",
                    f"{run.get('sure', 'n/a')}",
                ]
            )
        first = next(iter(r["indexes"]))
        for cap, run in r.get("caps", {}).items():
            p50, p99 = run["p50_ms"], run["p99_ms"]
            latencies = [f"{p50[s]:.1f} / {p99[s]:.1f}" for s in ("link", "retrieve", "dream", "arbitrate", "total")]
            blank = [""] * (len(header) - len(latencies) - 4)
            label = f"{first}, max_subgraph_nodes={cap}"
            out.append([r["graph"], label, *blank, *latencies, f"{run['right']}/{run['questions']}", f"{run['sure']}"])
    return header, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", nargs="+", default=["10000", "100000", "1000000", "wn18rr"])
    parser.add_argument("--indexes", nargs="+", default=["edge", "embedded"] if HAS_INDEX_SETTING else ["embedded"])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--encoder-sample", type=int, default=5000, help="texts the raw encoder rate is taken on")
    parser.add_argument("--no-calibrate", action="store_true", help="ingest without fitting the calibrator")
    parser.add_argument("--name", default="scale")
    parser.add_argument(
        "--before", type=Path, default=None, help="a JSON this bench wrote on older code, to set beside (bench/results)"
    )
    parser.add_argument("--max-nodes", type=int, default=None, help="REVERIE_MAX_SUBGRAPH_NODES for the questions")
    parser.add_argument(
        "--caps", type=int, nargs="*", default=[5000], help="also ask the first index with these max_subgraph_nodes"
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="write the table of a JSON this bench wrote, without running"
    )
    args = parser.parse_args()
    if args.render is not None:
        result = json.loads(args.render.read_text())
        if args.before is not None:
            result["before"] = json.loads(args.before.read_text())
        report(result, args.name)
        return
    global MAX_NODES
    MAX_NODES = args.max_nodes
    encoder = TextEncoder()
    ray.init(
        address="local", namespace=NAMESPACE, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    fixed = {index: baseline_rss(index) for index in args.indexes}
    calibrate = not args.no_calibrate
    rows, targets, homes = [], {}, []
    for graph in args.graphs:
        row, by_index, asked = ingest(graph, args.indexes, args.questions, args.encoder_sample, calibrate, encoder)
        rows.append(row)
        homes += by_index.values()
        for index, home in by_index.items():
            targets[graph, index, None] = (Pipeline(Settings(**settings_for(home, index, calibrate))), asked)
        for cap in args.caps:  # the first index's home with a smaller retrieval budget
            fields = {**settings_for(by_index[args.indexes[0]], args.indexes[0], calibrate), "max_subgraph_nodes": cap}
            targets[graph, args.indexes[0], cap] = (Pipeline(Settings(**fields)), asked)
    for (graph, index, cap), result in ask_rounds(targets).items():
        row = next(r for r in rows if r["graph"] == graph)
        if cap is None:
            row["indexes"][index].update(result)
        else:
            row.setdefault("caps", {})[str(cap)] = result
    for pipeline, _ in targets.values():
        with contextlib.suppress(Exception):
            stop(pipeline)
    for home in homes:
        shutil.rmtree(home, ignore_errors=True)
    ray.shutdown()
    command = "python -m bench.scale " + " ".join(sys.argv[1:])
    result = {"command": command.strip(), "fixed_rss_bytes": fixed, "rows": rows}
    if args.before is not None:
        result["before"] = json.loads(args.before.read_text())
    report(result, args.name)


def report(result: dict, name: str) -> None:
    """bench/results/NAME.json (the figures) and NAME.md (the table, the notes, the goals)."""
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    rows, fixed = result["rows"], result["fixed_rss_bytes"]
    header, out = table(rows, fixed)
    notes = NOTES.replace("FIXED", ", ".join(f"{index} {size / 1e6:.0f} MB" for index, size in fixed.items()))
    loads = ", ".join(f"{r['graph']} {r['load_average'][0]:.1f}/{r['load_average'][1]:.1f}" for r in rows)
    notes += f"\nThe machine's load average before/after each ingest: {loads}.\n"
    if "before" in result:
        before = result["before"]
        out += [[""] * len(header)] + before_rows(before, header)
        loads = ", ".join(f"{r['graph']} {r['load_average'][0]:.1f}/{r['load_average'][1]:.1f}" for r in before["rows"])
        notes += (
            f"\nThe rows marked (before) are the code before this bench (`{before['command']}` on commit "
            f"{before.get('commit', 'unknown')}, "
            f"the JSON's \"before\"): facts as Triple objects and a networkx graph, a JSON snapshot, qdrant-client's "
            f"embedded index, no calibration (its chain enumeration takes minutes past 100k facts). "
            f"Load average before/after each of its ingests: {loads}.\n"
        )
    notes += "\n" + goals(rows, fixed)
    write_table(name, "Cost against graph size", result["command"], header, out, notes=notes)


NOTES = """
Synthetic graphs: reverie/data/synthetic.py (seed 0): power-law expected degrees (exponent 2.2),
typed Zipf-distributed relations, YAGO3-10's density of about 8 facts per entity; entities that draw
no fact are not in the graph. WN18RR: ../shared/data/kg/wn18rr, its train.txt.
"ingest s" is the Pipeline's ingest as `IngestReport.seconds` counts it (plan, encode on the encoder
actor, graph, snapshot, vector index), the encoder's model load excluded; calibration (fitting the
walker's confidence on questions made from the graph) follows it and is its own column. "plan"
includes turning the facts into columns and sending them to the store actor. For an index other
than the first, its "vectors" is the time to build it from the snapshot in a fresh process and
"ingest s" is the first row's with that in place of the first index's write.
"encoder-bound triples/s" is the rate an ingest that did nothing but encode would reach: triples
times the encoder's own texts/s (on a seeded sample of the same texts, in this process, same batch
size) over the texts embedded (one per entity, two per relation). "ingest / encoder" is ingest time
over that encode time.
"load s" and "RSS MB" open the home in a fresh process (GraphStore.open_index: the snapshot, the
vector index, the phrase index and the walk arrays); RSS is the growth of resident memory over
the process with its libraries imported; "bytes/triple" is that less what a home of 100 facts takes
with the same index (FIXED), over the triples.
Latencies (ms) come from each Verdict's stage timings over seeded questions, verbalize off, one
warm-up question first; "ask" is the caller's wall time of Pipeline.answer. "right": questions whose top
answer is one of the graph's tails for that head and relation, sure or not.
"""


if __name__ == "__main__":
    main()
