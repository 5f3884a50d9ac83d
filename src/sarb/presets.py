"""Method presets: the named methods of the paper and its baselines as choices of parts.

A method is a head (``--head``), a loss (``--loss``) and optional augmentations
(``--augment``), plus options of those parts: the CSRL attention (``--attention sd|sam``),
whether SARB's blend weights are learned (``--blend-weights learned|fixed``), the targets of
blended entries (``--blend-targets paper|teacher``) and which entries the blended branches'
loss covers (``--blend-loss paper|blended``). Each preset below fixes all of them;
``--method NAME`` starts from a preset and any part given as a flag (or config key) replaces
the preset's. A run whose parts equal a preset's is named after it (the preset named by
``--method`` first, where two presets have the same parts), any other combination by its parts
(``csrl+partial-bce+ilrb+plrb``).

This module is configuration (plain values); the parts themselves are built by
``sarb.methods`` (heads in ``sarb.models.heads``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from sarb.errors import SarbError, quote
from sarb.registry import Registry

PART_FIELDS = (
    "head", "loss", "augment", "attention", "blend_weights", "blend_targets", "blend_loss"
)  # fmt: skip
"""The TrainConfig fields that a preset sets."""
DEFAULT_METHOD = "sarb"
"""The preset used when neither ``--method`` nor any part is given: the toolkit's method."""
PLAIN_METHOD = "bce-ignore"
"""Where parts given without ``--method`` start from: a linear head, the known-label BCE, no
augmentation (``--head csrl`` alone is SSGRL, ``--loss hill`` alone the hill preset)."""


@dataclass(frozen=True)
class Preset:
    """The parts of a named method (``augment``: comma-separated, "" for none)."""

    head: str
    loss: str
    augment: str = ""
    attention: str = "sd"
    blend_weights: str = "learned"
    blend_targets: str = "paper"
    blend_loss: str = "paper"

    def parts(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in PART_FIELDS}


OPTION_FIELDS = PART_FIELDS[3:]
"""The parts that are options of the head and the augmentations (after head, loss, augment)."""
PAPER_OPTIONS = {f: getattr(Preset, f) for f in OPTION_FIELDS}
"""Each option's value in the paper (the Preset defaults): ``{"attention": "sd", ...}``."""


PRESETS: Registry[Preset] = Registry("method", "--method")


def _preset(name: str, reference: str, summary: str, **parts: str) -> None:
    PRESETS.register(name, reference=reference, summary=summary)(lambda: Preset(**parts))


_SARB = "Pu et al., AAAI 2022"
_FULL = "ilrb,plrb,contrastive"
_preset("bce-ignore", "naive baseline", "BCE over known labels only",
        head="linear", loss="partial-bce")  # fmt: skip
_preset("bce-negative", "naive baseline", "unknown labels taken as absent",
        head="linear", loss="assume-negative")  # fmt: skip
_preset("partial-bce", "Durand et al., CVPR 2019", "BCE over known labels scaled by g(p)",
        head="linear", loss="partial-bce-durand")  # fmt: skip
_preset("curriculum", "Durand et al., CVPR 2019", "partial-BCE + confident pseudo-labels",
        head="linear", loss="partial-bce-durand", augment="curriculum")  # fmt: skip
_preset("ssgrl", "Chen et al., ICCV 2019", "SD + GGNN, no blending", head="csrl",
        loss="partial-bce")  # fmt: skip
_preset("sarb", _SARB, "the paper's method", head="csrl", loss="partial-bce", augment=_FULL)
_preset("sarb-sam", _SARB, "semantic attention (SAM, ADD-GCN) instead of SD",
        head="csrl", loss="partial-bce", augment=_FULL, attention="sam")  # fmt: skip
_preset("sarb-ilrb", _SARB, "ablation: ILRB only", head="csrl", loss="partial-bce",
        augment="ilrb,contrastive")  # fmt: skip
_preset("sarb-plrb", _SARB, "ablation: PLRB only", head="csrl", loss="partial-bce",
        augment="plrb,contrastive")  # fmt: skip
_preset("sarb-ilrb-fixed", _SARB, "ablation: ILRB only, a fixed at 0.5", head="csrl",
        loss="partial-bce", augment="ilrb,contrastive", blend_weights="fixed")  # fmt: skip
_preset("sarb-plrb-fixed", _SARB, "ablation: PLRB only, b fixed at 0.5", head="csrl",
        loss="partial-bce", augment="plrb,contrastive", blend_weights="fixed")  # fmt: skip
_preset("sarb-plus", "this toolkit", "SARB without PLRB and the contrastive loss, a fixed at "
        "0.5 (chosen on the glyphs validation split)", head="csrl", loss="partial-bce",
        augment="ilrb", blend_weights="fixed")  # fmt: skip
_preset("gcn-ml", "Chen et al., CVPR 2019 (ML-GCN)", "classifiers from a GCN over class "
        "embeddings", head="gcn", loss="partial-bce")  # fmt: skip
_preset("kggr", "Chen et al., TPAMI 2021 (re-implemented)", "classifiers propagated by a "
        "second GGNN", head="kggr", loss="partial-bce")  # fmt: skip
_COLE = "Cole et al., CVPR 2021"
_preset("an-ls", _COLE, "assume negative with label smoothing", head="linear", loss="an-ls")
_preset("wan", _COLE, "weak assume negative: unknown labels down-weighted to 1/(C-1)",
        head="linear", loss="wan")  # fmt: skip
_preset("epr", _COLE, "BCE on known labels + expected-positive regulariser",
        head="linear", loss="epr")  # fmt: skip
_preset("role", _COLE, "label estimates learned with the classifier (regularised)",
        head="linear", loss="role")  # fmt: skip
_KIM = "Kim et al., CVPR 2022"
_preset("ll-r", _KIM, "assume negative; the largest unknown-label losses rejected",
        head="linear", loss="ll-r")  # fmt: skip
_preset("ll-ct", _KIM, "assume negative; the largest unknown-label losses corrected (per step)",
        head="linear", loss="ll-ct")  # fmt: skip
_preset("ll-cp", _KIM, "assume negative; the largest unknown-label losses corrected for good",
        head="linear", loss="ll-cp")  # fmt: skip
_preset("asl", "Ridnik et al., ICCV 2021", "asymmetric loss over the known labels",
        head="linear", loss="asl")  # fmt: skip
_preset("hill", "Zhang et al., 2021", "focal-margin positives, Hill loss on unknown labels",
        head="linear", loss="hill")  # fmt: skip
_preset("splc", "Zhang et al., 2021", "focal margin; confident unknown labels become positives",
        head="linear", loss="splc")  # fmt: skip
_preset("em", "Zhou et al., ECCV 2022", "entropy maximisation of unknown labels + asymmetric "
        "pseudo-labelling", head="linear", loss="em")  # fmt: skip
_preset("ip-mixup", "Zhang et al., ICLR 2018", "SARB ablation: mixup of images (pixel space)",
        head="linear", loss="partial-bce", augment="ip-mixup")  # fmt: skip
_preset("fm-mixup", "Zhang et al., ICLR 2018", "SARB ablation: mixup of backbone feature maps",
        head="linear", loss="partial-bce", augment="fm-mixup")  # fmt: skip


def split_augment(value: str | None) -> list[str]:
    """``"ilrb, plrb"`` -> ``["ilrb", "plrb"]``; ``""``, ``"none"`` and None -> ``[]``."""
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    if names == ["none"]:
        return []
    return list(dict.fromkeys(names))


def method_name(parts: dict[str, Any]) -> str:
    """The composed name of ``parts`` (``head+loss+aug1+aug2``, then each option that is not the
    paper's, e.g. ``+sam``), used when no preset matches."""
    extra = [parts[f] for f in OPTION_FIELDS if parts.get(f) not in (None, PAPER_OPTIONS[f])]
    return "+".join([parts["head"], parts["loss"], *split_augment(parts["augment"]), *extra])


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[f] == b[f] for f in PART_FIELDS if f != "augment") and set(
        split_augment(a["augment"])
    ) == set(split_augment(b["augment"]))


def upgrade_config(values: dict[str, Any]) -> dict[str, Any]:
    """Config values as sarb 0.1 wrote them, in today's keys (a new dict): its
    ``augment: true|false`` (random crop and flip) is ``crop_flip``, a preset ``method``
    recorded without any part gets that preset's parts, and its ``contrastive_negatives:
    sampled`` (an approximation of the authors' sampling) is their exact scheme, ``reference``."""
    values = dict(values)
    if values.get("contrastive_negatives") == "sampled":
        values["contrastive_negatives"] = "reference"
    if isinstance(values.get("augment"), bool):
        values["crop_flip"] = values.pop("augment")
    method = values.get("method")
    if (
        isinstance(method, str)
        and method in PRESETS
        and not any(values.get(f) is not None for f in PART_FIELDS)
    ):
        values.update(PRESETS.create(method).parts())
    return values


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Fill ``method`` and every part field of a config's ``values`` (a copy is returned).

    The preset named by ``method`` gives the parts; a part set in ``values`` replaces the
    preset's. Without ``method``, parts start from :data:`PLAIN_METHOD`, and with no part
    either the method is :data:`DEFAULT_METHOD`. ``method`` is then the name of the preset with
    exactly these parts (the named one first), else the composed name of the parts.
    """
    values = dict(values)
    method = values.get("method")
    given = {f: values[f] for f in PART_FIELDS if values.get(f) is not None}
    if method in PRESETS:
        base = PRESETS.create(method).parts()
    elif method is None:
        base = PRESETS.create(PLAIN_METHOD if given else DEFAULT_METHOD).parts()
    elif "+" in method and {"head", "loss"} <= given.keys():  # a composed name, as recorded
        base = PRESETS.create(PLAIN_METHOD).parts()
    else:
        close = difflib.get_close_matches(str(method), PRESETS.names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SarbError(
            f"--method {quote(method, 40)}: unknown method{hint}; `sarb methods` lists the "
            f"{len(PRESETS.names())} methods"
        )
    parts = {**base, **given}
    parts["augment"] = ",".join(split_augment(parts["augment"]))
    order = [method] if method in PRESETS else []
    order += [n for n in PRESETS.names() if n != method]
    match = next((n for n in order if _same(PRESETS.create(n).parts(), parts)), None)
    values.update(parts, method=match or method_name(parts))
    return values


def describe(name: str) -> str:
    """One line of a preset's parts, e.g. ``--head csrl --loss partial-bce --augment ilrb``."""
    return describe_parts(PRESETS.create(name).parts())


def describe_parts(parts: dict[str, Any]) -> str:
    """The flags of the parts in ``parts`` (a config's values or a preset's parts)."""
    text = f"--head {parts['head']} --loss {parts['loss']}"
    if parts["augment"]:
        text += f" --augment {parts['augment']}"
    for field in OPTION_FIELDS:
        if parts[field] != PAPER_OPTIONS[field]:
            text += f" --{field.replace('_', '-')} {parts[field]}"
    return text
