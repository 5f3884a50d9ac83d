"""A user's own data: defaults and checks that keep a run from silently going wrong."""

from __future__ import annotations

import pytest

from sarb.cli import build_parser, main
from sarb.config import resolve_config
from sarb.errors import SarbError


def _resolve(argv: list[str]):
    return resolve_config(build_parser().parse_args(["train", *argv]))


def test_a_recipe_config_hides_nothing_of_a_users_manifest(tiny_dataset, capsys) -> None:
    """--config demo carries the demo's known: 0.1; on the user's manifest it must not apply."""
    cfg = _resolve(["--config", "demo", "--train", str(tiny_dataset["train"]),
                    "--test", str(tiny_dataset["test"])])  # fmt: skip
    assert cfg.dataset == "manifest"  # inferred from --train/--test
    assert cfg.known == 1.0 and cfg.mask_protocol == "hcp"
    assert cfg.method == "sarb"  # the toolkit's method, not a naive baseline
    assert "known: 0.1 is for its dataset demo" in capsys.readouterr().err
    explicit = _resolve(["--config", "demo", "--train", str(tiny_dataset["train"]),
                         "--test", str(tiny_dataset["test"]), "--known", "0.5"])  # fmt: skip
    assert explicit.known == 0.5
    assert _resolve(["--config", "demo"]).known == 0.1  # on its own dataset it holds


def test_manifests_without_the_manifest_dataset_are_refused(tiny_dataset, capsys) -> None:
    with pytest.raises(SarbError, match="--train/--test are manifests for --dataset manifest"):
        _resolve(["--dataset", "demo", "--train", str(tiny_dataset["train"])])
    assert main(["train", "--dataset", "demo", "--train", str(tiny_dataset["train"])]) == 2
    assert "not demo" in capsys.readouterr().err
