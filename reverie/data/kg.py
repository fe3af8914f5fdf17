"""Where triples come from: TSV/CSV/JSONL files, the datasets inside the pykeen wheel, the
MINERVA folder layout (train/dev/test/graph), and the built-in world.

Every reader validates the whole input before returning, so a malformed line stops an ingest
before anything is written.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reverie.errors import DatasetNotFoundError, IngestError
from reverie.schemas import Entity, Triple

# Datasets whose files ship inside the pykeen wheel (pykeen/datasets/<name>/{train,valid,test}.txt).
PYKEEN_BUNDLED = {"umls": "umls", "kinships": "kinships", "kinship": "kinships", "nations": "nations"}
BUILTIN = "world"


@dataclass
class KGDataset:
    """A knowledge graph with its splits. `graph` is what rollouts may walk; dev/test are queries."""

    name: str
    graph: list[Triple]
    train: list[Triple]
    dev: list[Triple] = field(default_factory=list)
    test: list[Triple] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)


def dataset_names() -> list[str]:
    return [BUILTIN, *sorted(PYKEEN_BUNDLED)]


def _triple(
    head: str, relation: str, tail: str, source: str, where: str, confidence: str | float | None = None
) -> Triple:
    try:
        kwargs: dict[str, Any] = {"head": head, "relation": relation, "tail": tail, "source": source}
        if confidence not in (None, ""):
            kwargs["confidence"] = float(confidence)
        return Triple(**kwargs)
    except (ValidationError, ValueError) as exc:
        raise IngestError(f"{where}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return str(exc)


def _read_delimited(path: Path, delimiter: str, source: str) -> list[Triple]:
    triples = []
    with path.open(newline="", encoding="utf-8") as handle:
        for lineno, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
                continue
            if (
                lineno == 1
                and delimiter == ","
                and [c.strip().lower() for c in row[:3]] == ["head", "relation", "tail"]
            ):
                continue  # header
            where = f"{path}:{lineno}"
            if len(row) not in (3, 4):
                raise IngestError(
                    f"{where}: expected 3 columns (head, relation, tail) or 4 (+ confidence), got {len(row)}"
                )
            triples.append(
                _triple(
                    row[0],
                    row[1],
                    row[2],
                    source=f"{source}:{lineno}",
                    where=where,
                    confidence=row[3] if len(row) == 4 else None,
                )
            )
    return triples


def jsonl_objects(path: Path, label: str | None = None) -> Iterator[tuple[int, str, dict]]:
    """Each non-blank line of a JSONL file as (line number, "file:line", object); a line that is not
    a JSON object is an IngestError naming it."""
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{label or path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IngestError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise IngestError(f"{where}: expected a JSON object")
            yield lineno, where, obj


def _read_jsonl(path: Path, source: str) -> tuple[list[Triple], list[Entity]]:
    triples, entities = [], []
    for lineno, where, obj in jsonl_objects(path):
        try:
            if "entity" in obj:
                entities.append(Entity(**obj["entity"]))
                continue
            unknown = set(obj) - {"head", "relation", "tail", "source", "confidence"}
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}")
            obj.setdefault("source", f"{source}:{lineno}")
            triples.append(Triple(**obj))
        except (ValidationError, ValueError, TypeError) as exc:
            raise IngestError(f"{where}: {_reason(exc)}") from None
    return triples, entities


def read_file(path: str | Path) -> tuple[list[Triple], list[Entity]]:
    """Read one TSV (.tsv/.txt), CSV or JSONL file of triples."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    if not path.is_file():
        raise IngestError(f"{path}: not a file")
    suffix = path.suffix.lower()
    source = path.name
    if suffix in (".tsv", ".txt"):
        return _read_delimited(path, "\t", source), []
    if suffix == ".csv":
        return _read_delimited(path, ",", source), []
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path, source)
    raise IngestError(f"{path}: unsupported file type {suffix!r}; use .tsv, .txt, .csv or .jsonl")


def _split(folder: Path, names: tuple[str, ...], source: str) -> list[Triple]:
    for name in names:
        path = folder / name
        if path.is_file():
            return _read_delimited(path, "\t", f"{source}/{name}")
    return []


def read_kg_folder(folder: str | Path, name: str | None = None) -> KGDataset:
    """A folder in the MINERVA layout: train.txt, dev.txt (or valid.txt), test.txt, optional graph.txt."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder}: no such dataset folder")
    name = name or folder.name
    train = _split(folder, ("train.txt",), name)
    if not train:
        raise DatasetNotFoundError(
            f"{folder}: a dataset folder needs train.txt (and optionally dev.txt, test.txt, graph.txt)"
        )
    graph = _split(folder, ("graph.txt",), name) or train
    return KGDataset(
        name=name,
        graph=graph,
        train=train,
        dev=_split(folder, ("dev.txt", "valid.txt"), name),
        test=_split(folder, ("test.txt",), name),
    )


def load_dataset(name_or_path: str) -> KGDataset:
    """A dataset by name (`world`, `umls`, `kinships`, `nations`) or a folder path."""
    key = name_or_path.strip().lower()
    if key == BUILTIN:
        from reverie.data.world import build_world

        entities, triples = build_world()
        return KGDataset(name=BUILTIN, graph=triples, train=triples, entities=entities)
    if key in PYKEEN_BUNDLED:
        folder = _pykeen_folder(PYKEEN_BUNDLED[key])
        return read_kg_folder(folder, name=PYKEEN_BUNDLED[key])
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return read_kg_folder(path)
    raise DatasetNotFoundError(
        f"unknown dataset {name_or_path!r}: use one of {', '.join(dataset_names())} or a folder with train/dev/test.txt"
    )


def _pykeen_folder(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pykeen")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"dataset {name!r} ships inside the pykeen wheel: pip install pykeen")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / name
    if not (folder / "train.txt").is_file():
        raise DatasetNotFoundError(
            f"dataset {name!r} is missing from the installed pykeen ({folder}); reinstall pykeen"
        )
    return folder
