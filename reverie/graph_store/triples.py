"""Triples as columns: what an ingest carries between processes and what the store keeps.

A million `Triple` objects take about 660 MB and six seconds to pickle each way; the same facts as
a vocabulary of names and arrays of ids take about 30 MB and a fraction of a second. A TripleTable
still reads as a sequence of Triple, so code that iterates facts needs no change.

A source "file.tsv:123" is kept as the prefix "file.tsv" (once, in the vocabulary) and the line
123; any other source whole, with line -1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

from reverie.schemas import Triple


def split_source(source: str) -> tuple[str, int]:
    """("file.tsv", 123) for "file.tsv:123"; (source, -1) when it does not end in a plain line number."""
    prefix, sep, number = source.rpartition(":")
    if sep and number.isascii() and number.isdigit() and len(number) < 10 and (number == "0" or number[0] != "0"):
        return prefix, int(number)
    return source, -1


def join_source(prefix: str, line: int) -> str:
    return prefix if line < 0 else f"{prefix}:{line}"


class TripleTable(Sequence[Triple]):
    """Facts as ids into vocabularies: names (heads and tails), relations, source prefixes."""

    __slots__ = ("names", "relations", "sources", "head", "rel", "tail", "source", "line", "confidence")

    def __init__(
        self,
        names: list[str],
        relations: list[str],
        sources: list[str],
        head: np.ndarray | list[int],
        rel: np.ndarray | list[int],
        tail: np.ndarray | list[int],
        source: np.ndarray | list[int],
        line: np.ndarray | list[int],
        confidence: np.ndarray | list[float],
    ):
        self.names, self.relations, self.sources = names, relations, sources
        self.head = np.asarray(head, np.int32)
        self.rel = np.asarray(rel, np.int32)
        self.tail = np.asarray(tail, np.int32)
        self.source = np.asarray(source, np.int32)
        self.line = np.asarray(line, np.int32)
        self.confidence = np.asarray(confidence, np.float64)

    @classmethod
    def of(cls, triples: Iterable[Triple]) -> "TripleTable":
        """The table of any iterable of Triple (a TripleTable is returned as it is)."""
        if isinstance(triples, TripleTable):
            return triples
        names: dict[str, int] = {}
        relations: dict[str, int] = {}
        sources: dict[str, int] = {}
        prefixes: dict[str, tuple[int, int]] = {}  # source -> (prefix id, line), for sources seen again
        head, rel, tail, source, line, confidence = [], [], [], [], [], []
        for t in triples:
            head.append(names.setdefault(t.head, len(names)))
            tail.append(names.setdefault(t.tail, len(names)))
            rel.append(relations.setdefault(t.relation, len(relations)))
            split = prefixes.get(t.source)
            if split is None:
                prefix, number = split_source(t.source)
                split = (sources.setdefault(prefix, len(sources)), number)
                if number < 0:
                    prefixes[t.source] = split
            source.append(split[0])
            line.append(split[1])
            confidence.append(t.confidence)
        return cls(list(names), list(relations), list(sources), head, rel, tail, source, line, confidence)

    @classmethod
    def empty(cls) -> "TripleTable":
        z = np.zeros(0, np.int32)
        return cls([], [], [], z, z, z, z, z, np.zeros(0))

    def __len__(self) -> int:
        return int(self.head.shape[0])

    @overload
    def __getitem__(self, index: int) -> Triple: ...
    @overload
    def __getitem__(self, index: slice) -> "TripleTable": ...
    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        i = range(len(self))[index]  # IndexError past the end, negative indices from it
        return Triple.model_construct(
            head=self.names[self.head[i]],
            relation=self.relations[self.rel[i]],
            tail=self.names[self.tail[i]],
            source=join_source(self.sources[self.source[i]], int(self.line[i])),
            confidence=float(self.confidence[i]),
        )

    def __iter__(self) -> Iterator[Triple]:
        names, relations, sources = self.names, self.relations, self.sources
        for h, r, t, s, n, c in zip(
            self.head.tolist(),
            self.rel.tolist(),
            self.tail.tolist(),
            self.source.tolist(),
            self.line.tolist(),
            self.confidence.tolist(),
        ):
            yield Triple.model_construct(
                head=names[h], relation=relations[r], tail=names[t], source=join_source(sources[s], n), confidence=c
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TripleTable({len(self)} triples, {len(self.names)} names, {len(self.relations)} relations)"

    def take(self, rows: np.ndarray | Sequence[int]) -> "TripleTable":
        """These rows, in this order (the vocabularies are shared)."""
        rows = np.asarray(rows, np.int64)
        return TripleTable(
            self.names,
            self.relations,
            self.sources,
            self.head[rows],
            self.rel[rows],
            self.tail[rows],
            self.source[rows],
            self.line[rows],
            self.confidence[rows],
        )
