"""Evaluation metrics: per-class AP / mAP and the OP/OR/OF1/CP/CR/CF1 family.

See docs/method.md#metrics. Conventions: ``scores`` is an (N, C) array of finite floats
(probabilities for the threshold rules), ``labels`` an (N, C) array with 1 = present,
-1 = absent, 0 = unknown. An entry with label 0 is ignored by every metric, as if that row did
not exist for that class: it never counts as a prediction, a ground truth or a competitor in a
ranking.

Formulas (everything is computed over known entries only):

- AP of class c, ``sklearn`` definition (non-interpolated, as scikit-learn / torchmetrics):
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order,
  P_n / R_n the precision / recall of the rule "score >= threshold n", R_0 = 0.
- AP of class c, ``voc`` definition (the reference code's, VOC2010+ all-point
  interpolation): the same sum with P_n replaced by its envelope ``max_{k >= n} P_k``
  (precision made monotone non-increasing from the right), i.e. the area under the
  step curve of the interpolated precision over recall.
- mAP = mean of AP over the classes with at least one known positive.
- Threshold rule (t = 0.5 by default): an entry is predicted positive when score >= t.
  Per class c: Nc = correct positives, Np = predicted positives, Ng = ground-truth positives.
  OP = sum Nc / sum Np, OR = sum Nc / sum Ng, OF1 = 2 OP OR / (OP + OR);
  CP = mean_c Nc/Np, CR = mean_c Nc/Ng, CF1 = 2 CP CR / (CP + CR).
- Top-3 rule: as the threshold rule, but an entry may only count when it is also among
  the 3 highest-scored known entries of its image.

All functions are vectorised over images and classes (no Python loop over either).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from sarb.errors import SarbError

AP_DEFINITIONS = ("voc", "sklearn")
"""The accepted values of ``definition`` / ``ap``."""

RATE_KEYS = ("OP", "OR", "OF1", "CP", "CR", "CF1")
TABLE_COLUMNS = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
TOP_K = 3


def _check_definition(definition: str) -> None:
    if definition not in AP_DEFINITIONS:
        raise SarbError(
            f"unknown AP definition {definition!r} (expected one of {', '.join(AP_DEFINITIONS)})"
        )


def _validate(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (float64 scores, int8 labels) or raise a one-line ``SarbError``."""
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SarbError(f"scores must be a numeric (N, C) array ({exc})") from None
    y_raw = np.asarray(labels)
    if y_raw.dtype == np.bool_:
        raise SarbError("labels must be in {1, -1, 0}, not booleans (0 means unknown)")
    if s.ndim != 2:
        raise SarbError(f"scores must be a 2-D (N, C) array, got shape {s.shape}")
    if y_raw.shape != s.shape:
        raise SarbError(f"labels shape {y_raw.shape} differs from scores shape {s.shape}")
    try:
        y_num = y_raw.astype(np.float64)
    except (TypeError, ValueError):
        raise SarbError(f"labels must be numeric values in {{1, -1, 0}} ({y_raw.dtype})") from None
    bad = ~np.isin(y_num, (1.0, -1.0, 0.0))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SarbError(
            f"labels must be in {{1, -1, 0}}; found {y_raw[i, j]} at row {i}, column {j}"
        )
    nonfinite = ~np.isfinite(s)
    if nonfinite.any():
        i, j = np.argwhere(nonfinite)[0]
        raise SarbError(f"scores must be finite; found {s[i, j]} at row {i}, column {j}")
    return s, y_num.astype(np.int8)


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of one class at every distinct score, highest first; entries with
    label 0 (unknown) are left out. Starts at recall 0, precision 1."""
    known = labels != 0
    s, pos = scores[known], labels[known] == 1
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.r_[s[1:] != s[:-1], True]  # the end of each group of tied scores
    tp = np.cumsum(pos)[last]
    seen = np.arange(1, len(s) + 1)[last]
    total = max(int(pos.sum()), 1)
    return np.r_[0.0, tp / total], np.r_[1.0, tp / seen]


def _ap(s: np.ndarray, y: np.ndarray, definition: str) -> np.ndarray:
    """AP per class of validated inputs; works on the transposed (C, N) layout for speed."""
    n, c = s.shape
    pos = (y == 1).T
    known_mask = (y != 0).T
    npos = pos.sum(axis=1)
    out = np.full(c, np.nan)
    if n == 0 or not npos.any():
        return out
    # Unknown entries go to the end with weight 0 in both counts: they change nothing.
    key = np.where(known_mask, s.T, -np.inf)
    order = np.argsort(-key, axis=1)  # order within a tie is irrelevant: ties are grouped
    ks = np.take_along_axis(key, order, axis=1)
    pos_sorted = np.take_along_axis(pos, order, axis=1)
    tp = np.cumsum(pos_sorted, axis=1, dtype=np.int64).astype(np.float64)
    seen = np.cumsum(np.take_along_axis(known_mask, order, axis=1), axis=1, dtype=np.int64)
    prec = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    # Tied scores form one threshold: every entry takes the precision at the end of its tie
    # group (the last position holding the same score).
    is_end = np.ones((c, n), dtype=bool)
    is_end[:, :-1] = ks[:, :-1] != ks[:, 1:]
    end = np.where(is_end, np.arange(n), n)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    prec = np.take_along_axis(prec, end, axis=1)
    if definition == "voc":
        prec = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
    # sum_n (R_n - R_{n-1}) P_n = (1 / #pos) * sum over positives of P at their threshold.
    total = np.where(pos_sorted, prec, 0.0).sum(axis=1)
    has = npos > 0
    out[has] = total[has] / npos[has]
    return out


def average_precision(
    scores: np.ndarray, labels: np.ndarray, definition: str = "voc"
) -> np.ndarray:
    """Average precision of every class, ignoring entries whose label is 0.

    ``definition="sklearn"``: ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct scores
    in decreasing order; equals ``sklearn.metrics.average_precision_score`` on the known
    rows of each column. ``definition="voc"``: the same sum with P_n replaced by the
    VOC2010+ envelope ``max_{k >= n} P_k`` (all-point interpolation), the definition of the
    authors' reference code.

    Ties: in both definitions tied scores form ONE threshold (all entries with that score
    are predicted positive together), so the result does not depend on row order. The
    reference code breaks ties by sort order instead, which makes its VOC AP depend on
    the order of the rows (e.g. scores (0.8, 0.8, 0.3) with labels (1, -1, 1) give 2/3
    here, but 5/6 or 2/3 there depending on which tied row comes first).

    Returns a (C,) float array in [0, 1]; NaN for a class without a known positive.
    Raises ``SarbError`` for an unknown definition or invalid inputs.
    """
    _check_definition(definition)
    s, y = _validate(scores, labels)
    return _ap(s, y, definition)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def _f1(p: float, r: float) -> float:
    return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


def _rates(pred: np.ndarray, gt: np.ndarray) -> dict[str, float | None]:
    """OP/OR/OF1/CP/CR/CF1 in percent from boolean (N, C) predictions and ground truths.

    Per-class means run over classes with Ng > 0; such a class with Np = 0 has precision 0.
    Without any known positive (when mAP is None too) recall and the class means are
    undefined: None, as OP is when nothing is predicted either.
    """
    nc = (pred & gt).sum(axis=0)
    npred = pred.sum(axis=0)
    ng = gt.sum(axis=0)
    op = _ratio(nc.sum(), npred.sum())
    orec = _ratio(nc.sum(), ng.sum())
    has = ng > 0
    if not has.any():
        return {k: 0.0 if k == "OP" and npred.sum() > 0 else None for k in RATE_KEYS}
    nc_h, np_h, ng_h = nc[has], npred[has], ng[has]
    cp_c = np.divide(nc_h, np_h, out=np.zeros(nc_h.shape), where=np_h > 0)
    cp = float(cp_c.mean())
    cr = float((nc_h / ng_h).mean())
    vals = {"OP": op, "OR": orec, "OF1": _f1(op, orec), "CP": cp, "CR": cr, "CF1": _f1(cp, cr)}
    return {k: 100.0 * vals[k] for k in RATE_KEYS}


def _top_k_mask(key: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N, C) mask of the k highest entries of each row of ``key``.

    Deterministic: among entries tied with the k-th highest value, the lower column indices
    take the remaining slots (what a stable descending sort would pick). O(N C), no sort.
    """
    n, c = key.shape
    if c <= k:
        return np.ones((n, c), dtype=bool)
    kth = -np.partition(-key, k - 1, axis=1)[:, k - 1 : k]  # the k-th highest value per row
    above = key > kth
    tied = key == kth
    slots = k - above.sum(axis=1, keepdims=True)
    return above | (tied & (np.cumsum(tied, axis=1) <= slots))


def compute_metrics(
    scores: np.ndarray, labels: np.ndarray, ap: str = "voc", threshold: float = 0.5
) -> dict[str, Any]:
    """All metrics of docs/method.md#metrics, in percent, as a JSON-serialisable dict.

    Keys: ``mAP`` (mean AP over classes with a known positive; None if there is none),
    ``OP, OR, OF1, CP, CR, CF1`` (threshold rule: predicted positive = score >= threshold),
    ``top3`` (the same six keys for the top-3 rule), ``ap_per_class`` (list, None for a
    class without a known positive), ``chance_ap_per_class`` (:func:`chance_ap`, the same
    None) and ``ap_definition`` (``ap``).

    Only entries with a known label (label != 0) count anywhere. Nc / Np / Ng are the
    correct / predicted / ground-truth positives of each class; OP = sum Nc / sum Np,
    OR = sum Nc / sum Ng, CP = mean_c Nc/Np, CR = mean_c Nc/Ng, OF1 and CF1 their harmonic
    means (0 when both are 0). Class means run over classes with Ng > 0, a class with
    Np = 0 has precision 0, and a ratio with a zero denominator overall is 0; without any
    known positive, the rates are None (undefined) as mAP is.

    Top-3 rule: an entry counts as predicted positive only if it is >= threshold AND among
    the 3 highest scores of its image, ranked among the image's KNOWN entries only (an
    unknown entry never takes a slot). Ties for the last slot go to the lower class index
    (the choice of a stable descending sort).
    """
    _check_definition(ap)
    s, y = _validate(scores, labels)
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise SarbError(f"threshold must be a number, got {threshold!r}") from None
    if not math.isfinite(t):
        raise SarbError(f"threshold must be finite, got {threshold!r}")

    aps = _ap(s, y, ap)
    valid = ~np.isnan(aps)
    m_ap = float(100.0 * aps[valid].mean()) if valid.any() else None

    known_mask = y != 0
    gt = y == 1
    pred = known_mask & (s >= t)
    in_top = _top_k_mask(np.where(known_mask, s, -np.inf), TOP_K)

    return {
        "mAP": m_ap,
        **_rates(pred, gt),
        "top3": _rates(pred & in_top, gt),
        "ap_per_class": _percents(aps),
        "chance_ap_per_class": chance_ap(y),
        "ap_definition": ap,
    }


def chance_ap(labels: np.ndarray) -> list[float | None]:
    """Per class, in percent, about the AP of a ranking by chance: the share of positives among
    the class's known labels (None without a known positive). On a sparse set a class's AP is
    read against it: 10 AP is 8x chance for a class with 1.2% positives, and still unlearned."""
    y = np.asarray(labels)  # (N, C) in {1, -1, 0}
    positives = (y == 1).sum(axis=0)  # (C,)
    known = (y != 0).sum(axis=0)  # (C,)
    return _percents(np.where(positives > 0, positives / np.maximum(known, 1), np.nan))


def _percents(fractions: np.ndarray) -> list[float | None]:
    """Per-class fractions (C,) as a JSON list of percents, None where undefined (NaN)."""
    return [None if np.isnan(f) else float(100.0 * f) for f in fractions]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.1f}" if math.isfinite(v) else "-"


def format_metrics(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """Plain-text table, one row per name, columns mAP CP CR CF1 OP OR OF1 (one decimal).

    ``rows`` maps a name (e.g. a method) to a dict such as ``compute_metrics`` returns;
    extra keys are ignored, a missing key, None or NaN is shown as ``-``.
    """
    header = ["name", *TABLE_COLUMNS]
    body = [[str(name), *(_cell(m.get(k)) for k in TABLE_COLUMNS)] for name, m in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return "\n".join(line(r) for r in [header, *body])
