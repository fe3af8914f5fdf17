"""Image files for ingest: a JSONL whose lines name images beside it.

Two kinds of line (image paths are relative to the JSONL's folder):

    {"image": "cup.png", "caption": "a glass cup on a table"}     the caption links it to an entity
    {"image": "cup.png", "entity": "glass cup"}                   or the entity is named
    {"what": "cup.png", "action": "when dropped", "result": "shards.png"}   a triplet; each side an image or a name

Each image becomes an entity of type "image" (named `image:<file>#<sha1 prefix>`, so the same
picture is one node however often it is named) with a `depicts` edge to the entity it shows.
Every line and every image is read and checked before anything is written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from reverie.data.kg import jsonl_objects
from reverie.errors import IngestError
from reverie.images import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, ImageError, load_image

DEPICTS = "depicts"
IMAGE_TYPE = "image"


@dataclass(frozen=True)
class ImageRef:
    path: Path
    data: bytes
    name: str  # the image entity's name


@dataclass
class ImageLine:
    """One line: an image with its caption or entity, or a triplet whose sides may be images."""

    where: str  # file:line, the source of every fact it adds
    image: ImageRef | None = None
    caption: str | None = None
    entity: str | None = None
    what: ImageRef | str | None = None
    action: str | None = None
    result: ImageRef | str | None = None

    @property
    def images(self) -> list[ImageRef]:
        return [x for x in (self.image, self.what, self.result) if isinstance(x, ImageRef)]


def image_entity_name(path: Path, data: bytes) -> str:
    return f"image:{path.name}#{hashlib.sha1(data).hexdigest()[:8]}"


def _text(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise IngestError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def read_image_file(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> list[ImageLine]:
    """Every line of an image JSONL, its images read and checked; an IngestError names file:line."""
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise IngestError(
            f'{path}: an image list is a .jsonl file of {{"image", "caption"|"entity"}} or {{"what", "action", "result"}} lines'
        )
    cache: dict[Path, ImageRef] = {}

    def image(value: str, where: str) -> ImageRef:
        file = (path.parent / value).resolve()
        if file not in cache:
            if not file.is_file():
                raise IngestError(f"{where}: no such image file: {value}")
            data = file.read_bytes()
            try:
                load_image(data, max_pixels, name=value)
            except ImageError as exc:
                raise IngestError(f"{where}: {exc.message}") from None
            cache[file] = ImageRef(file, data, image_entity_name(file, data))
        return cache[file]

    def side(value: str, where: str) -> ImageRef | str:
        return image(value, where) if Path(value).suffix.lower() in IMAGE_SUFFIXES else value

    lines = []
    for _, where, obj in jsonl_objects(path, path.name):
        keys = set(obj)
        if keys <= {"image", "caption", "entity"} and "image" in keys:
            if not keys & {"caption", "entity"}:
                raise IngestError(f'{where}: an image needs a "caption" or an "entity"')
            lines.append(
                ImageLine(
                    where=where,
                    image=image(_text(obj, "image", where), where),
                    caption=_text(obj, "caption", where) if "caption" in obj else None,
                    entity=_text(obj, "entity", where) if "entity" in obj else None,
                )
            )
        elif keys == {"what", "action", "result"}:
            lines.append(
                ImageLine(
                    where=where,
                    what=side(_text(obj, "what", where), where),
                    action=_text(obj, "action", where),
                    result=side(_text(obj, "result", where), where),
                )
            )
        else:
            raise IngestError(
                f'{where}: expected {{"image", "caption"|"entity"}} or {{"what", "action", "result"}}, got keys {sorted(keys)}'
            )
    if not lines:
        raise IngestError(f"{path}: no lines")
    return lines
