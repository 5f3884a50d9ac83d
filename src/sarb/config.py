"""Training configuration: one dataclass whose fields are the ``sarb train`` flags and YAML keys.

Precedence: dataclass defaults < ``--config FILE.yaml`` < explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sarb.data.partial import PROTOCOLS, SINGLE_POSITIVE, check_known
from sarb.errors import SarbError, quote
from sarb.files import first_line
from sarb.presets import DEFAULT_METHOD, apply_preset, upgrade_config


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults are the paper's recipe
    (docs/method.md#training-recipe)."""

    # data
    dataset: str = _opt("demo", "dataset: demo, glyphs, manifest, or a paper dataset (see README)")
    train: str | None = _opt(None, "training manifest (.csv or .jsonl), for --dataset manifest")
    val: str | None = _opt(None, "validation manifest; without it a split is carved from --train")
    test: str | None = _opt(None, "test manifest, for --dataset manifest")
    root: str | None = _opt(None, "dataset root folder (paper datasets)")
    annotations: str | None = _opt(None, "COCO-format annotation file of the training split")
    images: str | None = _opt(None, "image folder of --annotations")
    test_annotations: str | None = _opt(None, "COCO-format annotation file of the test split")
    test_images: str | None = _opt(None, "image folder of --test-annotations")
    voc_difficult: str = _opt(
        "negative",
        "VOC objects marked difficult: negative (reference) or ignore (standard VOC)",
        ("negative", "ignore"),
    )
    nuswide_unlabelled: str = _opt(
        "drop", "NUS-WIDE images with none of the 81 concepts: drop or keep", ("drop", "keep")
    )
    val_fraction: float = _opt(0.1, "fraction of the training set held out when --val is not given")
    known: float = _opt(1.0, "fraction of training labels kept (the paper's masks); 1 keeps all")
    mask_protocol: str = _opt(
        "hcp", "how training labels are hidden (single-positive: one positive per image)",
        PROTOCOLS,
    )  # fmt: skip
    mask_seed: int = _opt(0, "seed of the label mask (0 reproduces the paper's masks)")
    cache_dir: str | None = _opt(None, "where the demo data and feature caches live")
    # method: a preset, and its parts (sarb.presets)
    method: str | None = _opt(
        None, f"method preset (see `sarb methods`; {DEFAULT_METHOD} when no part is given)"
    )
    head: str | None = _opt(None, "head on the feature map: linear, csrl, gcn, kggr (the preset's)")
    loss: str | None = _opt(
        None,
        "loss: partial-bce, partial-bce-durand, assume-negative, an-ls, wan, epr, role, asl,"
        " hill, splc, ll-r, ll-ct, ll-cp, em (the preset's)",
    )
    augment: str | None = _opt(
        None,
        "comma-separated augmentations, or none: ilrb, plrb, contrastive, ip-mixup, fm-mixup,"
        " curriculum (the preset's)",
    )
    attention: str | None = _opt(None, "CSRL of the csrl head (the preset's)", ("sd", "sam"))
    blend_weights: str | None = _opt(
        None, "ILRB/PLRB blend weights a, b (the preset's)", ("learned", "fixed")
    )
    blend_targets: str | None = _opt(
        None,
        "targets of blended entries: paper (1 - a: the image's own share read as absent) or"
        " teacher (a s + 1 - a: its share scored by the model itself, detached) (the preset's)",
        ("paper", "teacher"),
    )
    blend_loss: str | None = _opt(
        None,
        "entries of the blended branches' loss: all known and blended entries (paper) or the"
        " blended entries only (blended) (the preset's)",
        ("paper", "blended"),
    )
    # model
    backbone: str = _opt(
        "resnet101",
        "backbone network: resnet18/50/101, efficientnet_lite0[_s16], cnn3, or timm/NAME[@STRIDE]"
        " (any timm model)",
    )
    weights: str = _opt("auto", "backbone weights: auto, random, or a state-dict path")
    trainable: str = _opt("paper", "backbone layers that train", ("paper", "all", "none"))
    image_size: int = _opt(448, "input side in pixels")
    embeddings: str = _opt("auto", "class-name embeddings: auto, glove, learned, or a .npy path")
    class_embedding_norm: str = _opt(
        "standardise",
        "fixed class vectors centred and scaled to unit variance (standardise) or as given (none)",
        ("standardise", "none"),
    )
    feat_dim: int = _opt(1024, "channels of the 1x1 conv neck before CSRL")
    neck_pool: int = _opt(2, "average-pool factor of the neck (2: 14x14 -> 7x7 at 448)")
    hidden_dim: int = _opt(512, "hidden size of semantic decoupling's attention")
    classifier_dim: int | None = _opt(
        None, "channels of the csrl head's o_c before the per-class classifiers (default feat_dim)"
    )
    bias_init: str = _opt(
        "prior",
        "start of the csrl head's class biases: prior (the log-odds of the class's share of"
        " positives among its known training labels) or uniform (PyTorch's default, as the"
        " authors' code)",
        ("prior", "uniform"),
    )
    # optimisation
    epochs: int = _opt(20, "training epochs")
    batch_size: int = _opt(16, "images per step")
    lr: float = _opt(1e-5, "Adam learning rate")
    weight_decay: float = _opt(5e-4, "Adam weight decay")
    backbone_lr_mult: float = _opt(
        1.0, "learning-rate multiplier of the backbone's trainable layers (fine-tuning)"
    )
    lr_step: int = _opt(10, "divide the learning rate by 10 every this many epochs")
    crop_flip: bool = _opt(True, "random crop and flip of the paper's recipe during training")
    feature_cache: bool = _opt(
        False, "cache frozen-backbone feature maps on disk (--trainable none)"
    )
    bce_normalize: str = _opt("batch", "partial-BCE normaliser", ("batch", "image"))
    # SARB (docs/method.md#blending)
    blend_start: int = _opt(5, "epoch (0-based) from which ILRB and PLRB run")
    proto_every: int = _opt(5, "recompute the prototypes every this many epochs")
    num_prototypes: int = _opt(10, "K-means centres per class (K)")
    plrb_per_image: int = _opt(
        1, "PLRB: unknown classes blended per image (the paper: 1; more is an option of ours)"
    )
    contrastive_weight: float = _opt(0.05, "weight of the contrastive loss (lambda)")
    contrastive_negatives: str = _opt(
        "reference",
        "pairs of the contrastive loss: reference (the authors' code: all positive pairs, 3P of"
        " each negative kind), all (every pair, the paper's text) or no-neg-neg (reference"
        " without pairs of two negatives)",
        ("reference", "all", "no-neg-neg"),
    )
    contrastive_warmup: bool = _opt(
        True, "ramp the contrastive weight from 0 to lambda over the first epoch (authors' code)"
    )
    # baselines (docs/method.md#compared-systems-and-published-numbers)
    curriculum_start: int = _opt(1, "curriculum labelling: epoch (0-based) of the first round")
    curriculum_every: int = _opt(1, "curriculum labelling: a pseudo-labelling round every N epochs")
    curriculum_fraction: float = _opt(
        0.1, "curriculum labelling: fraction of the still-unknown labels set per round"
    )
    mixup_alpha: float = _opt(1.0, "IP-/FM-Mixup: mixing weight ~ Beta(alpha, alpha)")
    # losses (Cole et al. 2021, Ridnik et al. 2021, Zhang et al. 2021)
    ls_coef: float = _opt(0.1, "an-ls: label smoothing epsilon")
    expected_positives: float | None = _opt(
        None, "epr: expected positives per image (default: estimated from the known labels)"
    )
    asl_gamma_pos: float = _opt(0.0, "asl: focusing exponent of positives")
    asl_gamma_neg: float = _opt(4.0, "asl: focusing exponent of negatives")
    asl_clip: float = _opt(0.05, "asl: probability margin (shift) of negatives")
    hill_lambda: float = _opt(1.5, "hill: lambda of the negative term (lambda - p) p^2")
    focal_margin: float = _opt(1.0, "hill, splc: margin of the focal-margin positive term")
    focal_gamma: float = _opt(2.0, "hill, splc: focusing exponent of the focal terms")
    role_lr_mult: float = _opt(10.0, "role: learning-rate multiplier of the label estimates")
    splc_tau: float = _opt(0.6, "splc: probability above which an unknown label counts as positive")
    splc_start: int = _opt(1, "splc: epoch (0-based) from which unknown labels are corrected")
    ll_delta: float = _opt(0.2, "ll-r, ll-ct, ll-cp: rejection-rate step, percent of the entries")
    em_alpha: float = _opt(0.1, "em: weight of the entropy of unknown labels")
    apl_beta: float = _opt(0.9, "em: weight of the soft pseudo-negatives (APL)")
    apl_proportion: float = _opt(0.9, "em: fraction of each class's unknown labels APL labels")
    apl_start: int = _opt(5, "em: epoch (0-based) of the first pseudo-labelling round")
    # run
    seed: int = _opt(0, "seed of initialisation, shuffling and augmentation")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    workers: int = _opt(2, "data-loading worker processes")
    threads: int | None = _opt(
        None, "CPU threads per process (default: its share of the cores; recorded)"
    )
    skip_bad_images: bool = _opt(
        False, "decode every image once first; skip and count unreadable ones instead of stopping"
    )
    skip_nonfinite: bool = _opt(False, "skip (and count) steps whose loss is NaN or infinite")
    sync_bn: bool = _opt(False, "SyncBatchNorm across processes under torchrun")
    deterministic: bool = _opt(False, "deterministic algorithms (bit-exact reruns and resumes)")
    amp: bool | None = _opt(None, "bf16 autocast; unset: on for CUDA, off on the CPU")
    compile: bool = _opt(False, "torch.compile the train step (the first steps compile)")
    max_steps: int | None = _opt(None, "stop after this many training steps (smoke runs)")
    ap: str = _opt("voc", "AP definition of the reported mAP", ("voc", "sklearn"))
    out: str | None = _opt(None, "run directory (config, logs, checkpoints, metrics.json)")
    overwrite: bool = _opt(False, "replace the run that --out already holds")

    def validate(self) -> None:
        """Reject values that cannot work, with the flag's name in the message."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise SarbError(
                    f"--{flag(f.name)}: {quote(value)} is not one of {', '.join(choices)}"
                )
        check_known(self.known)
        if self.mask_protocol == SINGLE_POSITIVE and self.known != 1.0:
            raise SarbError(
                f"--known {self.known} does not apply to --mask-protocol {SINGLE_POSITIVE}"
            )
        for f in dataclasses.fields(self):  # NaN passes every comparison below
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise SarbError(f"--{flag(f.name)} must be a finite number, got {value}")
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise SarbError(f"--{flag(name)} must be in [{low}, {high}], got {value}")
        if self.lr <= 0:
            raise SarbError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.contrastive_weight < 0:
            raise SarbError("--weight-decay and --contrastive-weight must be >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SarbError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.curriculum_fraction <= 1.0:
            raise SarbError(
                f"--curriculum-fraction must be in (0, 1], got {self.curriculum_fraction}"
            )
        if self.mixup_alpha <= 0:
            raise SarbError(f"--mixup-alpha must be > 0, got {self.mixup_alpha}")
        if not 0.0 <= self.ls_coef < 0.5:
            raise SarbError(f"--ls-coef must be in [0, 0.5), got {self.ls_coef}")
        if self.expected_positives is not None and self.expected_positives <= 0:
            raise SarbError(f"--expected-positives must be > 0, got {self.expected_positives}")
        for name in ("asl_gamma_pos", "asl_gamma_neg", "focal_gamma", "focal_margin"):
            if getattr(self, name) < 0:
                raise SarbError(f"--{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.role_lr_mult <= 0:
            raise SarbError(f"--role-lr-mult must be > 0, got {self.role_lr_mult}")
        if self.backbone_lr_mult <= 0:
            raise SarbError(f"--backbone-lr-mult must be > 0, got {self.backbone_lr_mult}")
        if not 0.0 < self.splc_tau < 1.0:
            raise SarbError(f"--splc-tau must be in (0, 1), got {self.splc_tau}")
        if not 0.0 <= self.ll_delta <= 100.0:
            raise SarbError(f"--ll-delta must be a percentage in [0, 100], got {self.ll_delta}")
        if self.em_alpha < 0 or self.apl_beta < 0:
            raise SarbError("--em-alpha and --apl-beta must be >= 0")
        if not 0.0 <= self.apl_proportion <= 1.0:
            raise SarbError(f"--apl-proportion must be in [0, 1], got {self.apl_proportion}")
        if not 0.0 <= self.asl_clip < 1.0:
            raise SarbError(f"--asl-clip must be in [0, 1), got {self.asl_clip}")


BIG = 10**9
INT_RANGES = {
    "epochs": (1, 100_000), "batch_size": (1, 65_536), "image_size": (8, 2048),
    "lr_step": (1, BIG), "feat_dim": (1, 16_384), "neck_pool": (1, 64),
    "hidden_dim": (1, 16_384), "classifier_dim": (1, 16_384), "num_prototypes": (1, 1000),
    "plrb_per_image": (1, 1000), "blend_start": (0, BIG),
    "proto_every": (1, BIG), "curriculum_start": (0, BIG), "curriculum_every": (1, BIG),
    "splc_start": (0, BIG), "apl_start": (0, BIG), "mask_seed": (0, 2**32 - 1),
    "seed": (0, 2**32 - 1), "workers": (0, 1024), "threads": (1, 4096),
    "max_steps": (1, 2**62),
}  # fmt: skip
"""Bounds of the integer settings: a size that would allocate without limit (a checkpoint's
``image_size: 60000``) is refused as a flag is."""


def flag(name: str) -> str:
    """The command-line flag of a TrainConfig field, without dashes: ``lr_step`` -> ``lr-step``."""
    return name.replace("_", "-")


def _base_type(tp: Any) -> type:
    """The concrete type of a field annotation (``int | None`` -> int)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


HELP_GROUPS = {"dataset": "data", "method": "method (a preset and its parts)",
               "backbone": "model", "epochs": "optimisation",
               "blend_start": "SARB: blending, prototypes, contrastive loss",
               "curriculum_start": "compared methods", "ls_coef": "loss settings",
               "seed": "run"}  # fmt: skip
"""``--help`` sections: the first TrainConfig field of each, in field order."""


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, defaulting to None so that given flags can be told apart;
    ``--help`` groups them (:data:`HELP_GROUPS`)."""
    hints = typing.get_type_hints(TrainConfig)
    parser.add_argument(
        "--config",
        help="YAML file whose keys mirror these flags, or a packaged config: demo, quick, "
        "glyphs, glyphs_finetune, paper, paper_coco, paper_voc, paper_vg200, paper_nuswide",
    )
    group: Any = parser
    for f in dataclasses.fields(TrainConfig):
        if f.name in HELP_GROUPS:
            group = parser.add_argument_group(HELP_GROUPS[f.name])
        tp = _base_type(hints[f.name])
        default = "" if f.default is None else f" ({f.default})"
        kwargs: dict[str, Any] = {"default": None, "help": f"{f.metadata['help']}{default}"}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = tp
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
        group.add_argument(f"--{flag(f.name)}", **kwargs)


def config_path(name: str) -> Path:
    """A config file path, or the name of a packaged config (``quick`` or ``quick.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = resources.files("sarb") / "configs"
    for candidate in (name, f"{name}.yaml"):
        if "/" not in candidate and (packaged / candidate).is_file():
            return Path(str(packaged / candidate))
    names = sorted(
        p.name.removesuffix(".yaml") for p in packaged.iterdir() if p.name.endswith(".yaml")
    )
    raise SarbError(f"{name}: config file not found (packaged configs: {', '.join(names)})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Keys of a config file, checked against TrainConfig's fields (dashes or underscores)."""
    return read_config_sections(path, ())[0]


YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_ALIASES = 1 << 20, 64, 64
"""Bounds of a YAML file that sarb reads: a config needs none of them."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing more than YAML_MAX_ALIASES aliases (a billion-laughs bomb)
    and nesting deeper than YAML_MAX_DEPTH (the composer recurses: a RecursionError)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > YAML_MAX_ALIASES:
                raise yaml.YAMLError(f"more than {YAML_MAX_ALIASES} aliases")
        self.depth += 1
        try:
            if self.depth > YAML_MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {YAML_MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The content of a YAML file, parsed within bounds (at most 1 MiB of UTF-8, 64 levels, 64
    aliases): a hostile file is one line naming it, not an exhausted memory or stack."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(YAML_MAX_BYTES + 1)
    except FileNotFoundError:
        raise SarbError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise SarbError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > YAML_MAX_BYTES:
        raise SarbError(f"{path}: larger than {YAML_MAX_BYTES >> 20} MiB; not a {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SarbError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader)
    except yaml.YAMLError as exc:
        raise SarbError(f"{path}: invalid YAML ({first_line(exc)})") from None


def read_config_sections(
    path: str | Path, sections: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A config file's TrainConfig keys, and the raw values of the named extra ``sections``
    (e.g. ``sweep:``), which are removed before the keys are checked."""
    path = Path(path)
    raw = read_yaml(path, "config file") or {}
    if not isinstance(raw, dict):
        raise SarbError(f"{path}: a config file must be a mapping of flag names to values")
    extra = {name: raw.pop(name) for name in sections if name in raw}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise SarbError(f"{path}: unknown key {quote(key)}")
        out[name] = value
    return out, extra


RUNTIME_FIELDS = ("device", "workers", "threads", "compile", "overwrite")
"""Settings that do not change a run's result: a run may resume with others."""
RESUMABLE_FIELDS = ("epochs", "out", *RUNTIME_FIELDS)
"""What a resumed run may change: how long it trains, where its folder is, how it runs."""


def config_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[tuple[str, Any, Any]]:
    """The settings that differ between two configs (as dicts; a key missing from ``before``,
    older than the setting, has its default), as ``(name, before, after)``, in field order."""
    skip = set(ignore)
    changes = []
    for f in dataclasses.fields(TrainConfig):
        old, new = before.get(f.name, f.default), after.get(f.name, f.default)
        if f.name not in skip and old != new:
            changes.append((f.name, old, new))
    return changes


def resume_change(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[str, Any, Any] | None:
    """The first setting outside RESUMABLE_FIELDS that differs between two configs, as ``(name,
    before, after)``; None when a run of ``before`` may continue as ``after``."""
    changes = config_changes(before, after, RESUMABLE_FIELDS)
    return changes[0] if changes else None


PROTOCOL_FIELDS = ("known", "mask_protocol")
"""The experiment protocol of a config file, which holds for the file's own dataset only."""


def resolve_config(args: argparse.Namespace | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then ``args.config`` (YAML), then the flags given, then ``overrides``.

    Given ``--train`` / ``--test`` manifests imply ``--dataset manifest``. A config file's
    protocol (``known``, ``mask_protocol``) is the experiment of its own dataset: on another
    dataset it is dropped, so a recipe such as ``--config demo`` never hides the labels of a
    user's manifest unless ``--known`` is given.
    """
    from_file: dict[str, Any] = {}
    if args is not None and getattr(args, "config", None):
        from_file = load_yaml(config_path(args.config))
    given: dict[str, Any] = {}
    if args is not None:
        for f in dataclasses.fields(TrainConfig):
            if getattr(args, f.name, None) is not None:
                given[f.name] = getattr(args, f.name)
    given.update(overrides)
    if (given.get("train") or given.get("test")) and "dataset" not in given:
        given["dataset"] = "manifest"
    values = {**from_file, **given}
    dataset = values.get("dataset", TrainConfig.dataset)
    if dataset != "manifest" and (values.get("train") or values.get("test")):
        raise SarbError(f"--train/--test are manifests for --dataset manifest, not {dataset}")
    if "dataset" in from_file and from_file["dataset"] != dataset:
        dropped = {k: from_file[k] for k in PROTOCOL_FIELDS if k in from_file and k not in given}
        for key in dropped:
            values.pop(key)
        if "known" in dropped and dropped["known"] != 1.0:
            print(f"sarb: note: the config's known: {dropped['known']} is for its dataset "
                  f"{from_file['dataset']}; no label of {dataset} is hidden (--known P hides "
                  "some)", file=sys.stderr)  # fmt: skip
    return typed_config(apply_preset(typed_values(upgrade_config(values))))


def typed_config(values: Mapping[str, Any]) -> TrainConfig:
    """The validated TrainConfig of field values (a YAML file's, a checkpoint's): checked by
    :func:`typed_values`, then by :meth:`TrainConfig.validate` (the ranges)."""
    cfg = TrainConfig(**typed_values(values))
    cfg.validate()
    return cfg


def typed_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Field values, each of its field's type (a bool is not a number; an int is taken for a
    float; None only where the field may be unset); unknown names are refused."""
    hints = typing.get_type_hints(TrainConfig)
    typed = {}
    for name, value in values.items():
        if name not in hints:
            raise SarbError(f"unknown config key {quote(name)}")
        tp = _base_type(hints[name])
        if value is None and tp is hints[name]:
            raise SarbError(f"config key {name!r}: expected {tp.__name__}, got None")
        if value is not None and tp in (int, float) and isinstance(value, bool):
            raise SarbError(f"config key {name!r}: expected a number, got {value}")
        if value is not None and tp is float and isinstance(value, int):
            value = float(value)
        elif value is not None and not isinstance(value, tp):
            raise SarbError(f"config key {name!r}: expected {tp.__name__}, got {quote(value)}")
        typed[name] = value
    return typed


def config_yaml(cfg: TrainConfig) -> str:
    """The resolved configuration as YAML (a run's ``config.yaml``): a run can be repeated."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


PATH_FIELDS = ("train", "val", "test", "root", "annotations", "images", "test_annotations",
               "test_images", "cache_dir")  # fmt: skip
"""Fields that name files or folders: stored absolute, so a checkpoint works from any folder."""


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with its data paths (and a weights file) made absolute."""
    fixed = {f: str(Path(v).resolve()) for f in PATH_FIELDS if (v := getattr(cfg, f))}
    if cfg.weights not in ("auto", "random", "imagenet") and Path(cfg.weights).is_file():
        fixed["weights"] = str(Path(cfg.weights).resolve())
    return dataclasses.replace(cfg, **fixed)
