"""How likely a person is to rate an answer good: a small logistic reward model fit on rated verdicts.
No Ray; numpy to score, torch (imported when fitting) to fit.

P(good | question, chain, answer) = sigmoid((w . featurize(chain) + b) / T).

Features (`featurize`) are what a rating can teach and what both a rated verdict
(`ChainFeatures.from_record`) and a bare walk of the path policy (`ChainFeatures.from_walk`) carry:
- the chain's relations, signed-feature-hashed (crc32, stable across processes, unlike `hash()`) into
  `dim` buckets: each step's relation name (an inverse step adds a token of its own, so "inverse of
  X" shares what is learned of X and still differs from it), each (position, relation), and each pair
  of consecutive relations. People rate answers by how they were reached: a relation they trust, or
  a detour through one they do not;
- the hop count, one-hot 0..4 (4 or more in one), and the shares of inverse and of imagined steps
  (a world model's proposals, not stored facts);
- the logit of the calibrated confidence (clipped to [1e-3, 1 - 1e-3]), and the same again for a
  verdict without a chain (rating "the graph does not say" good means something else than rating an
  answer good), and the answer's share of the rollouts (agreement);
- the graph reasoner's and the world model's values where given, each with a present-flag (0 and
  flag 0 when absent), so one model serves callers that have them and callers that do not.

`RewardModel.fit` holds out a stratified share of the ratings, fits an L2-regularised logistic
regression on the rest by full-batch L-BFGS (an importance weight per rating where given), then fits
a temperature on the held-out ratings (temperature scaling: the weighted NLL of sigmoid(logit / T),
T in [0.05, 20]) and reports held-out ROC-AUC, ECE and NLL before and after it. It needs at least
`MIN_PER_LABEL` ratings of each label. Saved as one JSON file, written to a temporary name and renamed
into place (reverie.atomic), like the answer calibrator (reverie/calibration.py).

`answer_named_in_note` reads the answer a rating's note names ("it should be X", "the answer is X"),
a rating that says which answer was right as well as that this one was wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from reverie.atomic import atomic_write
from reverie.edges import parse_relation_label, relation_label
from reverie.ranking import expected_calibration_error as _ece
from reverie.ranking import golden_section_min
from reverie.schemas import Chain, FeedbackRecord, Verdict

FORMAT = "reverie-reward-model"
FORMAT_VERSION = 1
"""Names the saved file and the feature layout below: a file of another version needs a refit."""

DEFAULT_DIM = 64
MIN_PER_LABEL = 8
"""Ratings of each label (good, bad) that `RewardModel.fit` needs at least."""
MAX_HOPS_FEATURE = 4
"""Hop counts 0..4 get a one-hot slot each; longer chains share the last."""
CONFIDENCE_CLIP = 1e-3
VALUE_CLIP = 10.0
"""The reasoner's and world model's values are used as given, clipped to +-VALUE_CLIP."""
TEMPERATURE_RANGE = (0.05, 20.0)
ECE_BINS = 10
MAX_NOTE_CHARS = 4000
"""`answer_named_in_note` reads no more of a note than this (Feedback.note's own bound)."""
MAX_ANSWER_CHARS = 200

EXTRA_FEATURES = (
    "hops=0",
    "hops=1",
    "hops=2",
    "hops=3",
    "hops>=4",
    "inverse share",
    "imagined share",
    "confidence logit",
    "confidence logit, no chain",
    "agreement",
    "reasoner",
    "reasoner present",
    "world",
    "world present",
)
"""The features after the `dim` hashed buckets, in order."""


# ---------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class ChainFeatures:
    """What the reward model sees of one answer: its chain's steps and the numbers that came with it."""

    relations: tuple[str, ...]
    """Stored (forward) relation names, one per step; `inverse` says which steps walked against them."""
    inverse: tuple[bool, ...]
    imagined: tuple[bool, ...]
    """Steps a world model proposed (not stored in the graph)."""
    confidence: float = 0.5
    """The calibrated confidence of the answer, in [0, 1]."""
    agreement: float = 0.0
    """The answer's share of the rollouts (votes / rollouts), in [0, 1]."""
    reasoner: float | None = None
    world: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "relations", tuple(str(r) for r in self.relations))
        object.__setattr__(self, "inverse", tuple(bool(v) for v in self.inverse))
        object.__setattr__(self, "imagined", tuple(bool(v) for v in self.imagined))
        if not len(self.relations) == len(self.inverse) == len(self.imagined):
            raise ValueError(
                f"relations, inverse and imagined must be of one length; got {len(self.relations)}, "
                f"{len(self.inverse)} and {len(self.imagined)}"
            )
        for name in ("confidence", "agreement"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"{name} must be in [0, 1]; got {value}")
            object.__setattr__(self, name, value)
        for name in ("reasoner", "world"):
            value = getattr(self, name)
            if value is not None:
                if not math.isfinite(float(value)):
                    raise ValueError(f"{name} must be finite or None; got {value}")
                object.__setattr__(self, name, float(value))

    @property
    def hops(self) -> int:
        return len(self.relations)

    @classmethod
    def from_walk(
        cls,
        relations: Sequence[str],
        inverse: Sequence[bool] | None = None,
        imagined: Sequence[bool] | None = None,
        *,
        confidence: float = 0.5,
        agreement: float = 0.0,
        reasoner: float | None = None,
        world: float | None = None,
    ) -> ChainFeatures:
        """A walk's features. `relations` are stored names or hop labels: "inverse of X"
        (reverie.edges.relation_label) reads as X walked inversely, as does X with `inverse` true."""
        parsed = [parse_relation_label(str(r)) for r in relations]
        flags = list(inverse) if inverse is not None else [False] * len(parsed)
        if len(flags) != len(parsed):
            raise ValueError(f"{len(parsed)} relations but {len(flags)} inverse flags")
        return cls(
            relations=tuple(name for name, _ in parsed),
            inverse=tuple(bool(flag) or inv for (_, inv), flag in zip(parsed, flags)),
            imagined=tuple(imagined) if imagined is not None else (False,) * len(parsed),
            confidence=confidence,
            agreement=agreement,
            reasoner=reasoner,
            world=world,
        )

    @classmethod
    def from_chain(
        cls,
        chain: Chain | None,
        *,
        confidence: float = 0.5,
        agreement: float = 0.0,
        reasoner: float | None = None,
        world: float | None = None,
    ) -> ChainFeatures:
        """A Chain's features (no steps for None: an answer the graph does not give)."""
        steps = chain.steps if chain is not None else []
        return cls.from_walk(
            [step.action for step in steps],
            [step.inverse for step in steps],
            [step.imagined for step in steps],
            confidence=confidence,
            agreement=agreement,
            reasoner=reasoner,
            world=world,
        )

    @classmethod
    def from_record(cls, record: FeedbackRecord, verdict: Verdict | None = None) -> ChainFeatures:
        """A rated verdict's features. Confidence and agreement come from the record where it has them,
        else from the verdict (its confidence; the rated answer's votes over its rollouts), else 0.5 and 0.
        `reasoner` and `world` likewise come from the record where it has them."""
        confidence = getattr(record, "confidence", None)
        agreement = getattr(record, "agreement", None)
        if verdict is not None:
            if confidence is None:
                confidence = verdict.confidence
            if agreement is None:
                agreement = _verdict_agreement(record, verdict)
        return cls.from_chain(
            record.chain,
            confidence=0.5 if confidence is None else float(confidence),
            agreement=0.0 if agreement is None else float(agreement),
            reasoner=getattr(record, "reasoner", None),
            world=getattr(record, "world", None),
        )


def _verdict_agreement(record: FeedbackRecord, verdict: Verdict) -> float:
    """The rated answer's share of the verdict's rollouts; with no answer, the top candidate's."""
    if verdict.rollouts <= 0 or not verdict.candidates:
        return 0.0
    answer = record.answer_entity or (record.chain.answer if record.chain is not None else None)
    candidate = verdict.candidates[0]
    if answer is not None:
        found = next((c for c in verdict.candidates if c.answer == answer), None)
        if found is None:
            return 0.0
        candidate = found
    return float(min(1.0, max(0.0, candidate.votes / verdict.rollouts)))


def rating_label(rating: str) -> int | None:
    """1 for "good", 0 for "bad", None for "neutral" (a rating that teaches nothing here)."""
    return {"good": 1, "bad": 0}.get(rating)


def _bucket(token: str, dim: int) -> tuple[int, float]:
    h = zlib.crc32(token.encode("utf-8"))
    return h % dim, (1.0 if (h >> 31) & 1 else -1.0)


def featurize(features: ChainFeatures, dim: int = DEFAULT_DIM) -> np.ndarray:
    """A vector of `dim + len(EXTRA_FEATURES)` numbers: the hashed relation tokens, then EXTRA_FEATURES."""
    if dim < 1:
        raise ValueError(f"dim must be at least 1; got {dim}")
    x = np.zeros(dim + len(EXTRA_FEATURES), np.float64)
    labels = [relation_label(name, inv) for name, inv in zip(features.relations, features.inverse)]
    tokens: list[str] = []
    for i, (name, inv, label) in enumerate(zip(features.relations, features.inverse, labels)):
        tokens.append(f"rel:{name}")
        if inv:
            tokens.append(f"inv:{name}")
        tokens.append(f"pos:{min(i, MAX_HOPS_FEATURE)}:{label}")
    tokens += [f"pair:{a}>{b}" for a, b in zip(labels, labels[1:])]
    for token in tokens:
        index, sign = _bucket(token, dim)
        x[index] += sign
    hops = features.hops
    extra = x[dim:]
    extra[min(hops, MAX_HOPS_FEATURE)] = 1.0
    extra[5] = sum(features.inverse) / hops if hops else 0.0
    extra[6] = sum(features.imagined) / hops if hops else 0.0
    c = min(max(features.confidence, CONFIDENCE_CLIP), 1.0 - CONFIDENCE_CLIP)
    logit = math.log(c / (1.0 - c))
    extra[7 if hops else 8] = logit
    extra[9] = features.agreement
    for slot, value in ((10, features.reasoner), (12, features.world)):
        if value is not None:
            extra[slot] = min(max(value, -VALUE_CLIP), VALUE_CLIP)
            extra[slot + 1] = 1.0
    return x


def feature_matrix(features: Sequence[ChainFeatures], dim: int = DEFAULT_DIM) -> np.ndarray:
    """featurize() of each, as rows of an (n, dim + len(EXTRA_FEATURES)) array."""
    out = np.zeros((len(features), dim + len(EXTRA_FEATURES)), np.float64)
    for i, f in enumerate(features):
        out[i] = featurize(f, dim)
    return out


# ---------------------------------------------------------------------------------- metrics


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int | bool] | np.ndarray) -> float:
    """The area under the ROC curve: the chance that a random positive scores above a random negative,
    ties counting a half (Mann-Whitney U over average ranks). NaN when only one class is present."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, np.float64)
    # groups of equal scores get the mean of the 1-based ranks they span
    starts = np.r_[0, np.nonzero(np.diff(sorted_s))[0] + 1]
    ends = np.r_[starts[1:], s.size]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def expected_calibration_error(
    probs: Sequence[float] | np.ndarray, labels: Sequence[int | bool] | np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE over `bins` equal-width bins: reverie.ranking.expected_calibration_error, 10 bins by default."""
    return _ece(np.asarray(probs, np.float64), np.asarray(labels, np.float64), bins=bins)


def _weighted_nll(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean of -log sigmoid(+-logit)."""
    signed = np.where(y > 0.5, logits, -logits)
    return float(np.sum(w * np.logaddexp(0.0, -signed)) / np.sum(w))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def fit_binary_temperature(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, bounds=TEMPERATURE_RANGE
) -> float:
    """The T in `bounds` that minimises the weighted NLL of sigmoid(logits / T): golden-section search
    over log T, kept only where it beats T = 1 (or 1 is out of bounds)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)

    def nll(log_t: float) -> float:
        return _weighted_nll(z / math.exp(log_t), y, w)

    best = golden_section_min(nll, math.log(bounds[0]), math.log(bounds[1]), 60)
    if bounds[0] <= 1.0 <= bounds[1] and nll(0.0) <= nll(best):
        return 1.0
    return float(math.exp(best))


# ---------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class FitReport:
    """How a fit went. Held-out numbers are None when nothing was held out."""

    ratings: int
    good: int
    bad: int
    trained_on: int
    held_out: int
    temperature: float
    train_nll: float
    auc: float | None = None
    """Held-out ROC-AUC."""
    ece_before: float | None = None
    """Held-out ECE (10 bins, unweighted) before the temperature, and after it."""
    ece_after: float | None = None
    nll_before: float | None = None
    """Held-out NLL (weighted by the ratings' weights, when given) before the temperature, and after it."""
    nll_after: float | None = None
    weight_decay: float = 0.0
    seed: int = 0


def _json_float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


class RewardModel:
    """P(good) = sigmoid((weights . featurize(features, dim) + bias) / temperature)."""

    def __init__(self, dim: int = DEFAULT_DIM, weight_decay: float = 1e-2):
        if dim < 1:
            raise ValueError(f"dim must be at least 1; got {dim}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.dim = int(dim)
        self.weight_decay = float(weight_decay)
        self.weights: np.ndarray | None = None
        self.bias = 0.0
        self.temperature = 1.0
        self.report: FitReport | None = None
        self.versus_confidence: dict[str, Any] | None = None
        """How it did against the confidence the rated verdicts carried, on ratings kept aside."""
        self.use_for_confidence = False
        """Whether answers take its probability as their confidence (it did better than the one before)."""

    @property
    def fitted(self) -> bool:
        return self.weights is not None

    # ------------------------------------------------------------------ scoring

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise RuntimeError("the reward model is not fitted; call fit() or RewardModel.load()")
        return x @ self.weights + self.bias

    def probability(self, features: Sequence[ChainFeatures]) -> np.ndarray:
        """P(good) of each, calibrated by the temperature; shape (len(features),)."""
        x = feature_matrix(features, self.dim)
        return _sigmoid(self._logits(x) / self.temperature)

    def score(self, features: ChainFeatures) -> float:
        """P(good) of one."""
        return float(self.probability([features])[0])

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        features: Sequence[ChainFeatures],
        labels: Sequence[int | bool],
        weights: Sequence[float] | np.ndarray | None = None,
        seed: int = 0,
        holdout: float = 0.2,
    ) -> FitReport:
        """Fit on `features` rated `labels` (1/True good, 0/False bad), `weights` an importance weight
        per rating. A stratified `holdout` share (at least one of each label when > 0) is kept out of
        the fit and fits the temperature; with holdout 0 the temperature stays 1."""
        y = np.asarray([_label(v) for v in labels], np.float64)
        if len(features) != len(y):
            raise ValueError(f"{len(features)} features but {len(y)} labels")
        if not 0.0 <= holdout < 1.0:
            raise ValueError(f"holdout must be in [0, 1); got {holdout}")
        w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64).ravel()
        if w.shape != y.shape:
            raise ValueError(f"{w.size} weights but {len(y)} labels")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and >= 0")
        good, bad = int(y.sum()), int(len(y) - y.sum())
        if good < MIN_PER_LABEL or bad < MIN_PER_LABEL:
            raise ValueError(
                f"the reward model needs at least {MIN_PER_LABEL} good and {MIN_PER_LABEL} bad ratings; "
                f"got {good} good and {bad} bad"
            )
        rng = np.random.default_rng(seed)
        held = np.zeros(len(y), bool)
        if holdout > 0:
            for label in (0.0, 1.0):
                members = rng.permutation(np.nonzero(y == label)[0])
                k = min(max(int(round(holdout * len(members))), 1), len(members) - 1)
                held[members[:k]] = True
        train = ~held
        if w[train].sum() <= 0:
            raise ValueError("the training ratings' weights sum to 0")

        x = feature_matrix(features, self.dim)
        w_train = w[train] / w[train].mean()
        self.weights, self.bias = _fit_logistic(x[train], y[train], w_train, self.weight_decay)
        self.temperature = 1.0
        train_nll = _weighted_nll(self._logits(x[train]), y[train], w_train)

        report: dict[str, Any] = dict(
            ratings=len(y),
            good=good,
            bad=bad,
            trained_on=int(train.sum()),
            held_out=int(held.sum()),
            temperature=1.0,
            train_nll=train_nll,
            weight_decay=self.weight_decay,
            seed=int(seed),
        )
        if held.any():
            z, y_held, w_held = self._logits(x[held]), y[held], w[held]
            if w_held.sum() <= 0:
                w_held = np.ones_like(w_held)
            self.temperature = fit_binary_temperature(z, y_held, w_held)
            report.update(
                temperature=self.temperature,
                auc=roc_auc(z, y_held),
                ece_before=expected_calibration_error(_sigmoid(z), y_held),
                ece_after=expected_calibration_error(_sigmoid(z / self.temperature), y_held),
                nll_before=_weighted_nll(z, y_held, w_held),
                nll_after=_weighted_nll(z / self.temperature, y_held, w_held),
            )
        self.report = FitReport(**report)
        return self.report

    def calibrate(
        self,
        features: Sequence[ChainFeatures],
        labels: Sequence[int | bool],
        weights: Sequence[float] | np.ndarray | None = None,
    ) -> float:
        """Refit only the temperature, on ratings the weights were not fit on; returns it."""
        y = np.asarray([_label(v) for v in labels], np.float64)
        if len(features) != len(y) or not len(y):
            raise ValueError(f"{len(features)} features but {len(y)} labels")
        z = self._logits(feature_matrix(features, self.dim))
        w = None if weights is None else np.asarray(weights, np.float64).ravel()
        self.temperature = fit_binary_temperature(z, y, w)
        return self.temperature

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        if self.weights is None:
            raise RuntimeError("the reward model is not fitted; there is nothing to save")
        report = None
        if self.report is not None:
            report = {k: (_json_float(v) if isinstance(v, float) else v) for k, v in asdict(self.report).items()}
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "dim": self.dim,
            "weight_decay": self.weight_decay,
            "weights": [float(v) for v in self.weights],
            "bias": float(self.bias),
            "temperature": float(self.temperature),
            "report": report,
            "versus_confidence": self.versus_confidence,
            "use_for_confidence": self.use_for_confidence,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as JSON, to a temporary name renamed into place; returns the path."""
        return atomic_write(path, json.dumps(self.to_dict(), indent=1).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> RewardModel:
        """A model saved by `save`. FileNotFoundError when there is none; ValueError for a file that is
        not one (or one of another format version)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no reward model there; fit one first")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a reward model (not JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a reward model (no format {FORMAT!r})")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: a reward model of format version {data.get('version')}, not {FORMAT_VERSION}; fit it again"
            )
        try:
            model = cls(dim=int(data["dim"]), weight_decay=float(data.get("weight_decay", 0.0)))
            weights = np.asarray(data["weights"], np.float64)
            bias, temperature = float(data["bias"]), float(data["temperature"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: a damaged reward model ({err!r})") from None
        if weights.shape != (model.dim + len(EXTRA_FEATURES),) or not np.all(np.isfinite(weights)):
            raise ValueError(
                f"{path}: a damaged reward model ({weights.size} weights for dim {model.dim}, "
                f"expected {model.dim + len(EXTRA_FEATURES)})"
            )
        if not (math.isfinite(bias) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"{path}: a damaged reward model (bias {bias}, temperature {temperature})")
        model.weights, model.bias, model.temperature = weights, bias, temperature
        model.versus_confidence = data.get("versus_confidence")
        model.use_for_confidence = bool(data.get("use_for_confidence", False))
        report = data.get("report")
        if isinstance(report, dict):
            known = {f.name for f in fields(FitReport)}
            try:
                model.report = FitReport(**{k: v for k, v in report.items() if k in known})
            except TypeError as err:
                raise ValueError(f"{path}: a damaged reward model report ({err})") from None
        return model


def _label(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if value in (0, 1):
        return float(value)
    raise ValueError(f"labels must be 0/1 or booleans; got {value!r}")


def _fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, weight_decay: float) -> tuple[np.ndarray, float]:
    """Weighted logistic regression, L2 on the weights (not the bias), by full-batch L-BFGS in float64."""
    import torch

    xt, yt, wt = (torch.from_numpy(np.ascontiguousarray(a, np.float64)) for a in (x, y, w))
    weights = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    prior = float(np.clip(np.sum(w * y) / np.sum(w), 1e-3, 1 - 1e-3))
    bias = torch.tensor(math.log(prior / (1 - prior)), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weights, bias],
        lr=1.0,
        max_iter=1000,
        max_eval=2500,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    total = wt.sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = xt @ weights + bias
        loss = (wt * torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none")).sum() / total
        loss = loss + 0.5 * weight_decay * (weights * weights).sum()
        loss.backward()
        return loss

    for _ in range(3):  # L-BFGS may stop on its evaluation budget; a restart finishes the job
        optimizer.step(closure)
        grad = torch.cat([weights.grad.abs().flatten(), bias.grad.abs().flatten()])  # type: ignore[union-attr]
        if float(grad.max()) < 1e-7:
            break
    return weights.detach().numpy().copy(), float(bias.detach())


# ---------------------------------------------------------------------------------- notes

_CUT = re.compile(r"[\n\r;!?]|\.(?:\s|$)|,\s+(?:not|but|because|since)\b", re.IGNORECASE)
_CUES = re.compile(
    r"\b(?:"
    r"(?:correct|right|real|true|actual|expected)\s+answer\s*(?:is|was|would\s+be|should\s+be|:)"
    r"|the\s+answer\s+(?:is|was|would\s+be)"
    r"|answer\s*:"
    r"|should\s+(?:have\s+been|be)"
    r")\s*:?\s*",
    re.IGNORECASE,
)
_NO = re.compile(r"^\s*(?:no|nope)\s*[,:\-\u2013\u2014]\s*(?:(?:it's|it\s+is|its|that's|that\s+is)\s+)?", re.IGNORECASE)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"
_NOT_ANSWERS = frozenset(
    """and any better bad but correct different easier faster fine good harder i idea incorrect it it's its less
    longer more no nope not nothing ok okay obvious right same shorter slower so something that that's this true
    false wrong yes you""".split()
)
"""First words that say a note names no answer ("it should be better", "the answer is wrong")."""


def answer_named_in_note(note: str) -> str | None:
    """The answer a rating's note says was right: "it should be X", "should be: X", "the answer is X",
    "correct answer: X", "no, X" (case-insensitive) give X as written, quotes and trailing punctuation
    stripped; None when the note names none. X runs to the end of its sentence (a newline, ; ! ?, or a
    full stop before a space). A caller should still look X up among the graph's entities."""
    if not isinstance(note, str) or not note.strip():
        return None
    text = note[:MAX_NOTE_CHARS]
    match = _CUES.search(text) or _NO.match(text)
    if match is None:
        return None
    rest = text[match.end() : match.end() + 4 * MAX_ANSWER_CHARS]
    cut = _CUT.search(rest)
    answer = rest[: cut.start()] if cut else rest
    answer = answer.strip().strip(_QUOTES).strip().rstrip(".,:;!?").strip().strip(_QUOTES).strip()
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return None
    first = answer.split()[0].lower().strip(_QUOTES + ",")
    if first in _NOT_ANSWERS or answer.lower() == "the same":
        return None
    return answer
