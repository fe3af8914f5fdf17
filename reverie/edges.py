"""How a stored fact is named wherever it appears: its edge id, and the label of a hop walked
against the fact's direction. One module, so a chain, the graph store, the LLM prompt and the
path policy all spell them alike.
"""

from __future__ import annotations

import hashlib

INVERSE_PREFIX = "inverse of "
WORLD_MODEL_SOURCE = "world-model"
"""The source of an imagined step: a world model proposed it; the graph does not hold it."""


def edge_id(head: str, relation: str, tail: str) -> str:
    """The stable id of a stored fact: the first 16 hex digits of sha1(head, relation, tail)."""
    return hashlib.sha1(f"{head}\t{relation}\t{tail}".encode()).hexdigest()[:16]


def relation_label(relation: str, inverse: bool = False) -> str:
    """How a hop reads: the relation's name, or "inverse of <name>" against its direction."""
    return f"{INVERSE_PREFIX}{relation}" if inverse else relation


def parse_relation_label(label: str) -> tuple[str, bool]:
    """(stored relation name, walked inversely) of a hop's label; the inverse of `relation_label`."""
    if label.startswith(INVERSE_PREFIX):
        return label[len(INVERSE_PREFIX) :], True
    return label, False
