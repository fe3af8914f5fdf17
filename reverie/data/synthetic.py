"""Synthetic knowledge graphs of any size, seeded, for measuring cost against graph size. No Ray.

The shape follows published graphs rather than a uniform random one:
- degrees are heavy-tailed (a Chung-Lu graph with power-law expected degrees, exponent about 2.2,
  as in Freebase, YAGO and Wikidata): a few hubs touch thousands of facts, most entities a handful;
- relations are typed and Zipf-distributed: each relation joins one entity type to another, and a
  few relations carry most facts (FB15k-237 has 237 relations, YAGO3-10 37, Wikidata5M 822);
- the density defaults to YAGO3-10's (1.08M triples over 123k entities: about 8 facts per entity);
  `entities` sets it, so a test can keep 100k triples over few entities (few texts to encode).

Names read like words ("varo kelin", "located in"), so linking and the text encoder see text of
the usual length. `synthetic-<triples>[-<entities>]` names a dataset (reverie.data.load_dataset),
and `python -m reverie.data.synthetic` writes one as a TSV file or a train.txt folder, which
`reverie ingest` reads.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from reverie.data.kg import KGDataset
from reverie.schemas import Triple

PREFIX = "synthetic"
DEGREE_EXPONENT = 2.2
"""The power-law exponent of the expected degrees (P(k) ~ k^-2.2)."""
FACTS_PER_ENTITY = 8
"""Default density: YAGO3-10 holds 1,079,040 triples over 123,182 entities."""

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "sh", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei"]
_CODAS = ["", "", "", "n", "l", "r", "s"]
_RELATIONS = [
    "located in", "part of", "member of", "works for", "born in", "lives in", "capital of", "founded by",
    "owned by", "made of", "used for", "produces", "borders", "speaks", "studied at", "married to",
    "child of", "sibling of", "directed", "wrote", "composed", "played for", "coached", "won",
    "nominated for", "influenced by", "successor of", "predecessor of", "instance of", "subclass of",
    "headquartered in", "flows into", "connects", "treats", "causes", "contains", "derived from",
    "named after", "genre of", "published by", "performed at", "allied with", "citizen of", "teaches",
    "located near", "depends on", "regulates", "supplies", "exports to", "imports from",
]  # fmt: skip
_QUALIFIERS = ["", "formerly ", "officially ", "partly ", "mainly "]
_TYPES = [
    "person", "place", "organisation", "work", "event", "substance", "species", "concept", "product",
    "language", "award", "field", "body of water", "building", "team", "period",
]  # fmt: skip
_NAME = re.compile(r"^synthetic-(\d+)(?:-(\d+))?$")


def default_entities(triples: int) -> int:
    return max(50, triples // FACTS_PER_ENTITY)


def default_relations(triples: int) -> int:
    """About 40 relations at 10k triples, 100 at 100k, 200 (the most) from 600k."""
    return int(np.clip(round(triples**0.4), 20, 200))


def _words(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct pronounceable words of two or three syllables."""
    syllables = [o + v + c for o in _ONSETS for v in _VOWELS for c in _CODAS]
    syllables = list(dict.fromkeys(syllables))
    words: dict[str, None] = {}
    while len(words) < count:
        need = count - len(words)
        parts = rng.integers(0, len(syllables), size=(need * 2, 3))
        three = rng.random(need * 2) < 0.4
        for row, long in zip(parts.tolist(), three.tolist()):
            words[syllables[row[0]] + syllables[row[1]] + (syllables[row[2]] if long else "")] = None
    return list(words)[:count]


def entity_names(count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct two-word names ("varo kelin"), in random order."""
    vocab = _words(int(np.ceil(np.sqrt(count))) + 1, rng)
    size = len(vocab)
    picks = rng.choice(size * size, size=count, replace=False)
    return [f"{vocab[p // size]} {vocab[p % size]}" for p in picks.tolist()]


def relation_names(count: int) -> list[str]:
    names = [q + r for q in _QUALIFIERS for r in _RELATIONS]
    if count > len(names):
        raise ValueError(f"at most {len(names)} synthetic relations")
    return names[:count]


def synthetic_triples(
    triples: int, entities: int | None = None, relations: int | None = None, seed: int = 0
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """(entity names, entity types, relation names, (n, 3) int array of head, relation, tail ids):
    `triples` distinct facts, no self-loops."""
    entities = entities or default_entities(triples)
    relations = relations or default_relations(triples)
    if triples < 1 or entities < 2 or relations < 1:
        raise ValueError("a synthetic graph needs at least 1 triple, 2 entities and 1 relation")
    rng = np.random.default_rng(seed)
    names = entity_names(entities, rng)
    num_types = int(np.clip(relations // 6, 2, len(_TYPES)))
    # Types Zipf-sized; a relation joins a head type to a tail type, and its share of facts is Zipf.
    type_weight = 1.0 / np.arange(1, num_types + 1)
    etype = rng.choice(num_types, size=entities, p=type_weight / type_weight.sum())
    etype[:num_types] = np.arange(num_types)  # every type has an entity
    # Chung-Lu weights: expected degree of the i-th entity ~ (i + i0)^(-1 / (gamma - 1)), ids shuffled.
    rank = rng.permutation(entities).astype(np.float64)
    weight = (rank + 10.0) ** (-1.0 / (DEGREE_EXPONENT - 1.0))
    rel_head = rng.integers(0, num_types, size=relations)
    rel_tail = rng.integers(0, num_types, size=relations)
    rel_weight = 1.0 / np.arange(1, relations + 1) ** 0.9
    rel_weight /= rel_weight.sum()
    pools = [np.flatnonzero(etype == t) for t in range(num_types)]
    pool_p = [weight[p] / weight[p].sum() for p in pools]

    keys = np.zeros(0, np.int64)
    rounds = 0
    while len(keys) < triples:
        need = triples - len(keys)
        draw = int(need * 1.3) + 16
        rel = rng.choice(relations, size=draw, p=rel_weight)
        heads = np.empty(draw, np.int64)
        tails = np.empty(draw, np.int64)
        if rounds >= 8:  # a relation's types are exhausted: any entity will do
            heads[:] = rng.choice(entities, size=draw, p=weight / weight.sum())
            tails[:] = rng.choice(entities, size=draw, p=weight / weight.sum())
        else:
            for r in np.unique(rel):
                at = np.flatnonzero(rel == r)
                h, t = rel_head[r], rel_tail[r]
                heads[at] = rng.choice(pools[h], size=at.size, p=pool_p[h])
                tails[at] = rng.choice(pools[t], size=at.size, p=pool_p[t])
        ok = heads != tails
        fresh = (heads[ok] * relations + rel[ok]) * entities + tails[ok]
        _, first = np.unique(fresh, return_index=True)
        fresh = fresh[np.sort(first)]  # draw order, repeats dropped
        fresh = fresh[~np.isin(fresh, keys)][:need]
        keys = np.concatenate([keys, fresh])
        rounds += 1
    heads, rest = np.divmod(keys, relations * entities)
    rels, tails = np.divmod(rest, entities)
    type_names = [_TYPES[t] for t in etype.tolist()]
    return names, type_names, relation_names(relations), np.stack([heads, rels, tails], axis=1)


def synthetic_kg(triples: int, entities: int | None = None, relations: int | None = None, seed: int = 0) -> KGDataset:
    """A synthetic knowledge graph as a dataset (its whole graph is its train split)."""
    names, _, rel_names, ids = synthetic_triples(triples, entities, relations, seed)
    name = dataset_name(triples, entities)
    facts = [
        Triple.model_construct(
            head=names[h], relation=rel_names[r], tail=names[t], source=f"{name}:{i + 1}", confidence=1.0
        )
        for i, (h, r, t) in enumerate(ids.tolist())
    ]
    return KGDataset(name=name, graph=facts, train=facts)


def dataset_name(triples: int, entities: int | None = None) -> str:
    return f"{PREFIX}-{triples}" if entities is None else f"{PREFIX}-{triples}-{entities}"


def parse_name(name: str) -> tuple[int, int | None] | None:
    """(triples, entities) of a `synthetic-<triples>[-<entities>]` name, or None for another name."""
    match = _NAME.match(name.strip().lower())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def write_tsv(path: str | Path, triples: int, entities: int | None = None, relations: int | None = None, seed: int = 0):
    """Write a synthetic graph as head<TAB>relation<TAB>tail lines; a folder gets train.txt (the
    MINERVA layout `reverie ingest --dataset FOLDER` reads), any other path is the file itself."""
    path = Path(path)
    if path.suffix.lower() not in (".tsv", ".txt"):
        path.mkdir(parents=True, exist_ok=True)
        path = path / "train.txt"
    names, _, rel_names, ids = synthetic_triples(triples, entities, relations, seed)
    with path.open("w", encoding="utf-8") as out:
        out.writelines(f"{names[h]}\t{rel_names[r]}\t{names[t]}\n" for h, r, t in ids.tolist())
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a seeded synthetic knowledge graph as TSV.")
    parser.add_argument("triples", type=int, help="distinct facts to write")
    parser.add_argument("--entities", type=int, default=None, help=f"default: triples / {FACTS_PER_ENTITY}")
    parser.add_argument(
        "--relations", type=int, default=None, help="default: about triples ** 0.4, 20 to 200 (250 at most)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="a .tsv file, or a folder (gets train.txt)")
    args = parser.parse_args(argv)
    print(write_tsv(args.out, args.triples, args.entities, args.relations, args.seed))


if __name__ == "__main__":
    main()
