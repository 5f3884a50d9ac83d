"""Checkpoints: read without executing code (``weights_only=True``); written by ``sarb.runs``.

Format 2 (this version) holds ``model`` (the backbone + head state dict), ``augmentations``
and ``loss`` (the method's own state: blend weights, prototypes, pseudo-labels, ROLE's label
estimates, LL-Cp's corrections), ``config`` (every
TrainConfig field, the method's parts included), ``class_names``, ``class_embeddings``
(``fixed``, ``learned`` or None: what the head holds), ``dataset``, ``format`` and the epoch
bookkeeping; ``last.pt`` adds the optimiser, scheduler and RNG states.

Format 1 (sarb 0.1, no ``format`` key) stored one ``model`` state dict in which the method's
state sat inside the head, and a config without the parts. :func:`migrate` converts one on
load, so old runs still evaluate and predict (resuming one is refused: its optimiser state
follows the old parameter order):

- the parts come from the preset of the recorded ``method``;
- ``head.embeddings`` -> ``head.embeddings.weight``; SSGRL's classifier ``head.head.fc`` ->
  ``head.classifier.fc`` and ``head.head.classifier`` -> ``head.classifier.per_class``;
- ``head.alpha.raw`` -> augmentation ``ilrb.weight.raw``; ``head.beta.raw``,
  ``head.prototypes``, ``head.prototype_valid`` -> ``plrb.*``; ``head.pseudo_labels`` ->
  ``curriculum.pseudo_labels``;
- ``augment: true|false`` (random crop and flip) -> ``crop_flip``;
- ``class_embeddings`` (fixed or learned) is inferred as sarb 0.1 did: ``--embeddings learned``,
  or ``auto`` with other than GloVe's 50 columns, were learned; the rest fixed.

Checkpoints written before a setting existed are loaded as they were trained: without
``classifier_dim`` the csrl head's ``o_c`` had ``2 x feat_dim`` channels; without
``class_embedding_norm`` fixed class vectors were used as given (``none``); without
``bias_init`` the csrl head's class biases started uniform (a checkpoint's state dict replaces them
anyway; the setting matters to a run restarted from its config).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sarb.errors import SarbError
from sarb.files import first_line
from sarb.presets import upgrade_config

FORMAT = 2

_HEAD_KEYS = (  # format 1 -> 2, inside the model state dict
    ("head.embeddings", "head.embeddings.weight"),
    ("head.head.fc.", "head.classifier.fc."),
    ("head.head.classifier.", "head.classifier.per_class."),
)
_METHOD_KEYS = (  # format 1 model keys -> format 2 augmentation keys
    ("head.alpha.raw", "ilrb.weight.raw"),
    ("head.beta.raw", "plrb.weight.raw"),
    ("head.prototypes", "plrb.prototypes"),
    ("head.prototype_valid", "plrb.prototype_valid"),
    ("head.pseudo_labels", "curriculum.pseudo_labels"),
)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file, migrated to this format."""
    path = Path(path)
    if not path.is_file():
        raise SarbError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        if "Weights only load failed" in str(exc):  # torch's advice would be to run the code
            found = re.search(r"GLOBAL (\S+)", str(exc))
            raise SarbError(
                f"{path}: refused: it holds Python objects, and loading them could run code"
                f" ({found[1][:100] if found else 'not tensors'}); a sarb checkpoint holds only"
                " tensors and plain values"
            ) from None
        raise SarbError(f"{path}: not a readable sarb checkpoint ({first_line(exc)})") from None
    if not isinstance(payload, dict) or "model" not in payload or "config" not in payload:
        raise SarbError(f"{path}: not a sarb checkpoint (no model weights or config inside)")
    if not isinstance(payload["model"], Mapping) or not isinstance(payload["config"], Mapping):
        raise SarbError(f"{path}: not a sarb checkpoint (its model or config is not a mapping)")
    version = payload.get("format", 1)
    if version == 1:
        payload = migrate(payload)
    elif version != FORMAT:
        raise SarbError(f"{path}: checkpoint format {version!r} is not one this sarb reads")
    payload["config"] = {**_older_settings(payload["config"]), **payload["config"]}
    return payload


def _older_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings added to the model after checkpoint format 2, with the values that rebuild
    a checkpoint written before them as it was trained (a checkpoint that has them keeps its
    own)."""
    feat_dim = config.get("feat_dim", 1024)  # TrainConfig's default
    return {
        "classifier_dim": 2 * feat_dim if isinstance(feat_dim, int) else None,
        "class_embedding_norm": "none",
        "bias_init": "uniform",
    }


def migrate(payload: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint payload in format 2 (see the module docstring)."""
    config = upgrade_config(payload["config"])
    model, augmentations = {}, {}
    for key, value in payload["model"].items():
        moved = next((new for old, new in _METHOD_KEYS if key == old), None)
        if moved is not None:
            augmentations[moved] = value
            continue
        for old, new in _HEAD_KEYS:
            if key == old or (old.endswith(".") and key.startswith(old)):
                key = new + key[len(old) :]
                break
        model[key] = value
    emb, kind = model.get("head.embeddings.weight"), None
    if torch.is_tensor(emb) and emb.dim() == 2:  # sarb 0.1's rule: 50 columns are GloVe's
        learned = config.get("embeddings") == "learned" or (
            config.get("embeddings") == "auto" and emb.shape[1] != 50
        )
        kind = "learned" if learned else "fixed"
    return {**payload, "model": model, "augmentations": augmentations, "loss": {}, "config": config,
            "class_embeddings": kind, "format": FORMAT, "migrated_from": 1}  # fmt: skip
