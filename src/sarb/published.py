"""The paper's published numbers as data: average mAP over the nine known-label proportions.

Source: Pu et al., "Semantic-Aware Representation Blending for Multi-Label Image Recognition
with Partial Labels", AAAI 2022, Table 1 (the compared systems) and Table 2 (ablations). Each
number is the mean test mAP (%) over the proportions 10%, 20%, ..., 90% of known labels, with
ResNet-101 at 448 x 448 on the full datasets. They are comparable with a sweep only when it
runs the paper's recipe (``configs/sweep_paper.yaml``) on the same dataset.

``paper_avg_map(method, dataset)`` looks a number up by this toolkit's method name (or an
alias such as ``ml-gcn``) and dataset name (``coco2014``/``coco``, ``voc2007``, ``vg200``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DATASET_COLUMNS = ("COCO", "VG-200", "VOC 2007")
"""The columns of the paper's tables, in the paper's order."""

_DATASET_ALIASES = {
    "COCO": ("coco", "coco2014", "mscoco", "mscoco2014"),
    "VG-200": ("vg200", "vg", "visualgenome", "visualgenome200"),
    "VOC 2007": ("voc2007", "voc", "voc07", "pascalvoc2007"),
}


@dataclass(frozen=True)
class Published:
    """One system of the paper's tables: its name there, its numbers, and where they appear."""

    name: str
    avg_map: dict[str, float]  # DATASET_COLUMNS -> average mAP (%)
    table: str
    aliases: tuple[str, ...]  # method names of this toolkit that are this system


def _row(name: str, coco: float, vg: float, voc: float, table: str, *aliases: str) -> Published:
    return Published(name, dict(zip(DATASET_COLUMNS, (coco, vg, voc), strict=True)), table, aliases)


PUBLISHED: tuple[Published, ...] = (
    _row("SSGRL", 74.1, 39.7, 89.5, "Table 1", "ssgrl"),
    _row("GCN-ML", 74.4, 39.3, 88.9, "Table 1", "gcn-ml", "ml-gcn", "gcn"),
    _row("KGGR", 75.6, 41.5, 89.7, "Table 1", "kggr"),
    _row(
        "Curriculum labeling",
        60.7,
        28.4,
        84.1,
        "Table 1",
        "curriculum",
        "curriculum-labeling",
        "curriculum-labelling",
        "cl",
    ),
    _row("Partial-BCE", 74.7, 39.8, 90.0, "Table 1", "partial-bce"),
    _row("SARB", 77.9, 45.6, 90.7, "Table 1", "sarb"),
    _row("SAM", 77.6, 45.4, 90.6, "Table 2", "sarb-sam", "sam"),
    _row("IP-Mixup", 74.3, 39.7, 89.7, "Table 2", "ip-mixup", "mixup-ip"),
    _row("FM-Mixup", 74.1, 39.6, 89.6, "Table 2", "fm-mixup", "mixup-fm"),
    _row("ILRB only", 77.3, 44.9, 90.2, "Table 2", "sarb-ilrb", "ilrb"),
    _row("ILRB fixed a", 76.9, 44.5, 89.8, "Table 2", "sarb-ilrb-fixed", "ilrb-fixed"),
    _row("PLRB only", 77.3, 44.9, 90.4, "Table 2", "sarb-plrb", "plrb"),
    _row("PLRB fixed b", 76.9, 44.6, 90.2, "Table 2", "sarb-plrb-fixed", "plrb-fixed"),
)
"""The paper's Table 1 systems and Table 2 ablations."""

LATER_WORK: tuple[Published, ...] = (
    _row("SARB (journal version)", 78.4, 46.0, 91.5, "later work"),
    _row("Saliency-regularised self-training (ICCV 2023)", 81.0, 49.2, 93.7, "later work"),
)
"""Higher numbers reported after the paper; context only, never a table's column."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_METHOD = {_key(a): p for p in PUBLISHED for a in (p.name, *p.aliases)}
_BY_DATASET = {_key(a): col for col, names in _DATASET_ALIASES.items() for a in names}


def dataset_column(dataset: str) -> str | None:
    """The paper's column for a dataset name (``coco2014`` -> ``COCO``); None if not a paper one."""
    return _BY_DATASET.get(_key(dataset))


def published_for(method: str) -> Published | None:
    """The paper's system that ``method`` (a ``sarb methods`` name or an alias) reproduces."""
    return _BY_METHOD.get(_key(method))


def paper_avg_map(method: str, dataset: str) -> float | None:
    """Published Avg. mAP (%) of ``method`` on ``dataset``; None when the paper has none."""
    column = dataset_column(dataset)
    entry = published_for(method)
    if column is None or entry is None:
        return None
    return entry.avg_map[column]
