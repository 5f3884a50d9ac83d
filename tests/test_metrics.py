"""The metrics: AP (voc / sklearn), mAP, the F1 family and its top-3 variant."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sarb.errors import SarbError
from sarb.metrics import average_precision, chance_ap, compute_metrics, format_metrics


def _random_case(seed, n=60, c=7, unknown=0.0, decimals=1):
    """Scores rounded to ``decimals`` (many ties), labels in {1, -1} with a share set to 0."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((n, c)) < 0.3, 1, -1)
    scores = np.round(np.clip(0.25 * labels + rng.normal(0.5, 0.3, (n, c)), 0, 1), decimals)
    if unknown:
        labels[rng.random((n, c)) < unknown] = 0
    labels[:, 0] = np.where(np.arange(n) % 2 == 0, labels[:, 0], 0)  # a half-unknown column
    labels[0, 0] = 1  # ... that still has a positive
    return scores, labels


def _slow_ap(scores, labels, definition):
    """Loop-based AP of one column, straight from the definition (tied scores = 1 threshold)."""
    keep = labels != 0
    s, y = scores[keep], labels[keep] == 1
    if not y.any():
        return math.nan
    points = []  # (recall, precision) at every distinct threshold, highest first
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        points.append(((pred & y).sum() / y.sum(), (pred & y).sum() / pred.sum()))
    total, prev_r = 0.0, 0.0
    for i, (r, p) in enumerate(points):
        if definition == "voc":
            p = max(q for _, q in points[i:])
        total += (r - prev_r) * p
        prev_r = r
    return total


# --- AP: sklearn definition ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("unknown", [0.0, 0.3])
def test_sklearn_definition_equals_sklearn(seed, unknown):
    scores, labels = _random_case(seed, unknown=unknown, decimals=1 + seed % 3)
    ours = average_precision(scores, labels, "sklearn")
    for j in range(labels.shape[1]):
        keep = labels[:, j] != 0
        y = labels[keep, j] == 1
        if y.any():
            ref = average_precision_score(y, scores[keep, j])
            assert ours[j] == pytest.approx(ref, abs=1e-6), (seed, j)
        else:
            assert np.isnan(ours[j])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("definition", ["voc", "sklearn"])
def test_vectorised_equals_loop_definition(seed, definition):
    scores, labels = _random_case(seed, n=40, c=5, unknown=0.2)
    ours = average_precision(scores, labels, definition)
    ref = [_slow_ap(scores[:, j], labels[:, j], definition) for j in range(labels.shape[1])]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_voc_is_at_least_sklearn_and_in_unit_interval():
    scores, labels = _random_case(11, n=200, c=10, unknown=0.3)
    voc = average_precision(scores, labels, "voc")
    skl = average_precision(scores, labels, "sklearn")
    assert np.all(voc >= skl - 1e-12)
    assert np.all((voc >= 0) & (voc <= 1)) and np.all((skl >= 0) & (skl <= 1))
    assert np.any(voc > skl + 1e-6)  # the two definitions do differ on real-looking data


# --- AP: voc definition, hand-computed ------------------------------------------------------


def test_voc_and_sklearn_differ_hand_computed():
    # Ranked labels +, -, +, + (3 positives): P = 1, 1/2, 2/3, 3/4 and R = 1/3, 1/3, 2/3, 1.
    # sklearn: 1/3 * 1 + 0 * 1/2 + 1/3 * 2/3 + 1/3 * 3/4 = (1 + 2/3 + 3/4) / 3 = 29/36.
    # voc envelope: 1, 3/4, 3/4, 3/4 -> 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6.
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    labels = np.array([[1], [-1], [1], [1]])
    assert average_precision(scores, labels, "sklearn")[0] == pytest.approx(29 / 36)
    assert average_precision(scores, labels, "voc")[0] == pytest.approx(5 / 6)
    assert average_precision(scores, labels)[0] == pytest.approx(5 / 6)  # voc is the default


def test_voc_ties_form_one_threshold():
    # Scores 0.8 (+), 0.8 (-), 0.3 (+). Thresholds: 0.8 -> P = 1/2, R = 1/2; 0.3 -> P = 2/3, R = 1.
    # voc: envelope 2/3, 2/3 -> 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    # sklearn: 1/2 * 1/2 + 1/2 * 2/3 = 7/12.
    # (Breaking the tie by order, as the reference code does, would give 5/6 with + first.)
    for order in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        scores = np.array([[0.8], [0.8], [0.3]])[order]
        labels = np.array([[1], [-1], [1]])[order]
        assert average_precision(scores, labels, "voc")[0] == pytest.approx(2 / 3)
        assert average_precision(scores, labels, "sklearn")[0] == pytest.approx(7 / 12)


def test_voc_tie_example_two():
    # Scores 0.9 (-), 0.5 (+), 0.5 (-), 0.1 (+): thresholds 0.9 -> P 0, R 0; 0.5 -> P 1/3, R 1/2;
    # 0.1 -> P 1/2, R 1. voc: envelope at 0.5 is max(1/3, 1/2) -> 1/2*1/2 + 1/2*1/2 = 1/2.
    # sklearn: 1/2 * 1/3 + 1/2 * 1/2 = 5/12.
    scores = np.array([[0.9], [0.5], [0.5], [0.1]])
    labels = np.array([[-1], [1], [-1], [1]])
    assert average_precision(scores, labels, "voc")[0] == pytest.approx(1 / 2)
    assert average_precision(scores, labels, "sklearn")[0] == pytest.approx(5 / 12)


def test_ap_perfect_and_all_tied():
    scores = np.array([[0.9, 0.5], [0.8, 0.5], [0.1, 0.5], [0.0, 0.5]])
    labels = np.array([[1, 1], [1, -1], [-1, -1], [-1, -1]])
    for definition in ("voc", "sklearn"):
        ap = average_precision(scores, labels, definition)
        assert ap[0] == pytest.approx(1.0)
        assert ap[1] == pytest.approx(1 / 4)  # one threshold: P = 1/4 at R = 1


def test_class_without_positive_is_nan_and_excluded():
    # Class 0: ranked 0.9 (+), 0.5 (-), 0.4 (+): P 1 at R 1/2, 1/2, then 2/3 at R 1
    # -> voc: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    # Class 1: no positive. Class 2: its only positive is unknown -> no known positive either.
    scores = np.array([[0.9, 0.3, 0.7], [0.5, 0.6, 0.1], [0.4, 0.1, 0.2]])
    labels = np.array([[1, -1, 0], [-1, -1, -1], [1, -1, -1]])
    ap = average_precision(scores, labels, "voc")
    assert ap[0] == pytest.approx(5 / 6)
    assert np.isnan(ap[1]) and np.isnan(ap[2])
    m = compute_metrics(scores, labels)
    assert m["mAP"] == pytest.approx(100 * 5 / 6)
    assert m["ap_per_class"][0] == pytest.approx(100 * 5 / 6)
    assert m["ap_per_class"][1:] == [None, None]
    assert m["chance_ap_per_class"] == [pytest.approx(100 * 2 / 3), None, None]
    assert m["ap_definition"] == "voc"
    # Threshold 0.5:           Nc  Np  Ng
    # class 0 (0.9+, 0.5-)      1   2   2
    # class 1 (0.6-)            0   1   0   counts in OP, not in the class means (Ng = 0)
    # class 2 (0.7 unknown)     0   0   0
    # OP = 1/3, OR = 1/2; CP = CR = 1/2 (class 0 only), CF1 = 1/2.
    assert m["OP"] == pytest.approx(100 / 3)
    assert m["OR"] == pytest.approx(50.0)
    assert m["OF1"] == pytest.approx(40.0)  # 2 (1/3)(1/2) / (5/6) = 2/5
    assert m["CP"] == pytest.approx(50.0)
    assert m["CR"] == pytest.approx(50.0)
    assert m["CF1"] == pytest.approx(50.0)
    json.dumps(m, allow_nan=False)


def test_no_positive_at_all_gives_none_where_undefined():
    scores = np.array([[0.9, 0.1], [0.2, 0.7]])
    labels = np.array([[-1, -1], [0, -1]])
    m = compute_metrics(scores, labels, ap="sklearn")
    assert m["mAP"] is None and m["ap_per_class"] == [None, None]
    assert m["OP"] == 0.0  # two predicted positives, both wrong
    assert all(m[k] is None for k in ("OR", "OF1", "CP", "CR", "CF1"))
    assert m["top3"]["OP"] == 0.0 and m["top3"]["CR"] is None
    json.dumps(m, allow_nan=False)


def test_all_unknown_labels_give_no_number():
    m = compute_metrics(np.array([[0.9, 0.1], [0.2, 0.7]]), np.zeros((2, 2), int))
    assert m["mAP"] is None
    assert all(m[k] is None for k in ("OP", "OR", "OF1", "CP", "CR", "CF1"))


# --- threshold and top-3 rules, hand-computed -----------------------------------------------

HAND_SCORES = np.array(
    [
        [0.90, 0.60, 0.65, 0.70],
        [0.80, 0.99, 0.70, 0.60],  # 0.99 is unknown: it must not take a top-3 slot
        [0.30, 0.55, 0.60, 0.10],
        [0.10, 0.20, 0.95, 0.90],  # 0.95 is unknown: never a prediction
    ]
)
HAND_LABELS = np.array(
    [
        [1, 1, -1, 1],
        [-1, 0, 1, 1],
        [1, -1, -1, -1],
        [-1, 1, 0, -1],
    ]
)


def test_hand_case_ap():
    # voc AP per class over the known rows, in ranked order:
    # class 0: 0.9+ 0.8- 0.3+ 0.1-  P 1, 1/2, 2/3, 1/2 at R 1/2, 1/2, 1, 1 -> 1/2 + 1/2 * 2/3 = 5/6
    # class 1: 0.6+ 0.55- 0.2+      -> 1/2 * 1 + 1/2 * 2/3 = 5/6
    # class 2: 0.7+ 0.65- 0.6-      -> 1
    # class 3: 0.9- 0.7+ 0.6+ 0.1-  P 0, 1/2, 2/3 -> envelope 2/3 for both positives -> 2/3
    # mAP = (5/6 + 5/6 + 1 + 2/3) / 4 = 5/6.
    m = compute_metrics(HAND_SCORES, HAND_LABELS)
    np.testing.assert_allclose(m["ap_per_class"], [500 / 6, 500 / 6, 100.0, 200 / 3])
    assert m["mAP"] == pytest.approx(500 / 6)


def test_threshold_rule_hand_computed():
    # score >= 0.5 on known entries.     Nc  Np  Ng
    # class 0: rows 0 (+), 1 (-)           1   2   2   (row 2 is a missed positive)
    # class 1: rows 0 (+), 2 (-)           1   2   2   (row 3 missed, row 1 unknown)
    # class 2: rows 0 (-), 1 (+), 2 (-)    1   3   1   (row 3 unknown)
    # class 3: rows 0 (+), 1 (+), 3 (-)    2   3   2
    # sum                                  5  10   7
    # OP = 5/10, OR = 5/7, OF1 = 2 * (1/2)(5/7) / (1/2 + 5/7) = 10/17.
    # CP = mean(1/2, 1/2, 1/3, 2/3) = 1/2, CR = mean(1/2, 1/2, 1, 1) = 3/4, CF1 = 0.75/1.25 = 3/5.
    m = compute_metrics(HAND_SCORES, HAND_LABELS)
    expected = {"OP": 50.0, "OR": 500 / 7, "OF1": 1000 / 17, "CP": 50.0, "CR": 75.0, "CF1": 60.0}
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_top3_rule_hand_computed():
    # Top 3 among each image's KNOWN entries, then >= 0.5:
    # row 0: 0.9 (c0), 0.7 (c3), 0.65 (c2) -> c1 (0.6, a true positive) is dropped
    # row 1: known c0, c2, c3 are all in the top 3 (the unknown 0.99 takes no slot)
    # row 2: 0.6 (c2), 0.55 (c1), 0.3 (c0) -> predictions c2, c1
    # row 3: known c0, c1, c3 -> prediction c3
    #          Nc  Np  Ng
    # class 0   1   2   2
    # class 1   0   1   2
    # class 2   1   3   1
    # class 3   2   3   2
    # sum       4   9   7
    # OP = 4/9, OR = 4/7, OF1 = 2 (4/9)(4/7) / (4/9 + 4/7) = 1/2.
    # CP = mean(1/2, 0, 1/3, 2/3) = 3/8, CR = mean(1/2, 0, 1, 1) = 5/8, CF1 = 2 (3/8)(5/8) = 15/32.
    top3 = compute_metrics(HAND_SCORES, HAND_LABELS)["top3"]
    expected = {"OP": 400 / 9, "OR": 400 / 7, "OF1": 50.0, "CP": 37.5, "CR": 62.5, "CF1": 46.875}
    assert set(top3) == set(expected)
    for key, value in expected.items():
        assert top3[key] == pytest.approx(value), key


def test_top3_ties_go_to_lower_class_index():
    # One image, four tied positives: classes 0, 1, 2 take the three slots, class 3 is dropped.
    # Top-3 counts: Nc = Np = (1, 1, 1, 0), Ng = (1, 1, 1, 1): OP 3/3, OR 3/4,
    # CP = mean(1, 1, 1, 0) (Np = 0 -> precision 0) = 3/4, CR = 3/4.
    m = compute_metrics(np.full((1, 4), 0.6), np.ones((1, 4), dtype=int))
    assert m["top3"]["OP"] == pytest.approx(100.0)
    assert m["top3"]["OR"] == pytest.approx(75.0)
    assert m["top3"]["CP"] == pytest.approx(75.0)
    assert m["top3"]["CR"] == pytest.approx(75.0)
    assert m["OR"] == pytest.approx(100.0)  # the threshold rule keeps all four
    # Partial ties: 0.9 then three tied 0.6 -> class 0 plus the two lowest tied indices.
    scores = np.array([[0.6, 0.6, 0.9, 0.6, 0.6]])
    m = compute_metrics(scores, np.ones((1, 5), dtype=int))
    assert m["top3"]["OR"] == pytest.approx(60.0) and m["top3"]["CR"] == pytest.approx(60.0)


def test_threshold_argument_and_fewer_than_three_classes():
    scores = np.array([[0.4, 0.45], [0.2, 0.9]])
    labels = np.array([[1, -1], [-1, 1]])
    # threshold 0.4: class 0 Nc 1 Np 1 Ng 1; class 1 Nc 1 Np 2 Ng 1 -> OP 2/3, CP 3/4, CR 1.
    m = compute_metrics(scores, labels, threshold=0.4)
    assert m["OP"] == pytest.approx(200 / 3) and m["CP"] == pytest.approx(75.0)
    assert m["CR"] == pytest.approx(100.0)
    assert m["top3"] == {k: m[k] for k in ("OP", "OR", "OF1", "CP", "CR", "CF1")}


# --- unknown labels are ignored -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_unknown_scores_change_nothing(seed):
    scores, labels = _random_case(seed, n=80, c=6, unknown=0.4)
    rng = np.random.default_rng(100 + seed)
    changed = scores.copy()
    unknown = labels == 0
    changed[unknown] = rng.random(unknown.sum()) * 2 - 0.5  # any value, often above the others
    for ap in ("voc", "sklearn"):
        assert compute_metrics(changed, labels, ap=ap) == compute_metrics(scores, labels, ap=ap)


def test_row_order_changes_nothing():
    scores, labels = _random_case(5, n=50, c=6, unknown=0.2)
    perm = np.random.default_rng(0).permutation(len(scores))
    a = compute_metrics(scores, labels)
    b = compute_metrics(scores[perm], labels[perm])
    assert a.keys() == b.keys()
    np.testing.assert_allclose(
        [v for v in a["ap_per_class"] if v is not None],
        [v for v in b["ap_per_class"] if v is not None],
        atol=1e-9,
    )
    for key in ("mAP", "OP", "OR", "OF1", "CP", "CR", "CF1"):
        assert a[key] == pytest.approx(b[key])


def test_result_is_json_serialisable_python_types():
    scores, labels = _random_case(3, unknown=0.2)
    m = compute_metrics(scores, labels, ap="sklearn")
    assert m["ap_definition"] == "sklearn"
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert type(m["mAP"]) is float and all(type(m[k]) is float for k in ("OP", "CF1"))


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "shape"),
        (np.zeros(3), np.zeros(3), "2-D"),
        (np.array([[0.1, np.nan]]), np.array([[1, -1]]), "finite"),
        (np.array([[0.1, np.inf]]), np.array([[1, -1]]), "finite"),
        (np.array([[0.1, 0.2]]), np.array([[1, 2]]), r"\{1, -1, 0\}.*row 0, column 1"),
        (np.array([[0.1, 0.2]]), np.array([[1, 0.5]]), r"\{1, -1, 0\}"),
        (np.array([[0.1, 0.2]]), np.array([[True, False]]), "boolean"),
        (np.array([["a", "b"]]), np.array([[1, -1]]), "numeric"),
    ],
)
def test_bad_inputs_raise(scores, labels, match):
    with pytest.raises(SarbError, match=match):
        compute_metrics(scores, labels)
    with pytest.raises(SarbError, match=match):
        average_precision(scores, labels)


def test_unknown_definition_and_bad_threshold():
    scores, labels = np.array([[0.3]]), np.array([[1]])
    with pytest.raises(SarbError, match="'map11'"):
        average_precision(scores, labels, definition="map11")
    with pytest.raises(SarbError, match="'VOC'"):
        compute_metrics(scores, labels, ap="VOC")
    with pytest.raises(SarbError, match="threshold"):
        compute_metrics(scores, labels, threshold=float("nan"))


def test_float_labels_accepted():
    scores, labels = _random_case(2, unknown=0.2)
    assert compute_metrics(scores, labels.astype(float)) == compute_metrics(scores, labels)


# --- table ----------------------------------------------------------------------------------


def test_format_metrics():
    m = compute_metrics(HAND_SCORES, HAND_LABELS)
    text = format_metrics({"sarb": m, "a-long-name": {"mAP": None, "CP": 12.345, "OF1": math.nan}})
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["name", "mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"]
    assert lines[1].split() == ["sarb", "83.3", "50.0", "75.0", "60.0", "50.0", "71.4", "58.8"]
    assert lines[2].split() == ["a-long-name", "-", "12.3", "-", "-", "-", "-", "-"]
    # Aligned: names are left-justified, every value ends where its header ends.
    for header in ("mAP", "CR", "OF1"):
        end = lines[0].index(header) + len(header)
        assert all(line[end - 1] != " " and line[end : end + 1] in ("", " ") for line in lines)
    assert format_metrics({}) == "name  mAP  CP  CR  CF1  OP  OR  OF1"


def test_chance_ap_is_the_share_of_positives_among_known_labels() -> None:
    # class 0: 2 of 4 known positive; class 1: 1 of 3 known (one unknown); class 2: none
    labels = np.array([[1, -1, 0], [1, 0, -1], [-1, -1, -1], [-1, 1, -1]])
    assert chance_ap(labels) == [50.0, pytest.approx(100 / 3), None]
    # and it is what a ranking by chance scores on average
    rng = np.random.default_rng(0)
    y = np.where(rng.random((400, 1)) < 0.1, 1, -1)
    aps = [compute_metrics(rng.random((400, 1)), y, ap="sklearn")["ap_per_class"][0]
           for _ in range(50)]  # fmt: skip
    assert np.mean(aps) == pytest.approx(chance_ap(y)[0], abs=2.0)
