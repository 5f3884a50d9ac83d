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


def test_an_existing_run_is_never_silently_overwritten(tiny_dataset, tmp_path, capsys) -> None:
    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_dataset, out), "--epochs", "1"]
    assert main(args) == 0
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run (metrics.json)" in err and "--overwrite" in err
    assert (out / "metrics.json").read_text() == before  # untouched
    (out / "stale.txt").write_text("a user's file")
    assert main([*args, "--overwrite"]) == 0
    assert (out / "stale.txt").is_file()  # only the run's own files are replaced
    assert not (out / "last.prev.pt").exists()  # one epoch: no file of the old run is left


def test_resume_extends_with_epochs_and_refuses_other_changes(tiny_dataset, tmp_path, capsys):
    import json

    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5 differs from its config.yaml (0.001)" in err
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0  # extended
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert "epochs: 3" in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err


def test_a_validation_split_that_cannot_rank_epochs_keeps_the_last(tiny_dataset, tmp_path, capsys):
    import json

    from tests.conftest import tiny_train_args

    lines = tiny_dataset["test"].read_text().splitlines()
    val = tmp_path / "val.csv"  # every label unknown but one positive
    rows = [line.split(",") for line in lines[1:]]
    for r in rows:
        r[1:] = ["0"] * (len(r) - 1)
    rows[0][1] = "1"
    folder = tiny_dataset["test"].parent
    val.write_text("\n".join([lines[0], *(",".join([str(folder / r[0]), *r[1:]]) for r in rows)]))
    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_dataset, out, "ssgrl"), "--val", str(val), "--epochs", "3"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "a defined AP for only 0 of 3 classes" in err and "the last epoch is kept" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 3 and metrics["selected_on"] == "last epoch"


def test_a_run_selected_before_blending_says_so(tiny_dataset, tmp_path, capsys) -> None:
    import json

    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_dataset, out, "sarb"), "--blend-start", "5"]  # 2 epochs
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "comes before blending starts (epoch 6)" in err
    assert json.loads((out / "metrics.json").read_text())["selected_before_blending"] is True
    # the startup summary says what the run is about to do
    assert "sarb: method sarb: --head csrl --loss partial-bce --augment ilrb,plrb" in err
    assert f"sarb: run directory {out.resolve()}" in err and "known positives per image" in err


def test_predictor_evaluates_a_manifest_path(tiny_dataset, tmp_path):
    from sarb import api
    from sarb.data.manifest import read_manifest
    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--epochs", "1"]) == 0
    predictor = api.load_model(out, device="cpu")
    by_path = predictor.evaluate(str(tiny_dataset["test"]))
    assert by_path == predictor.evaluate(read_manifest(tiny_dataset["test"]))


def test_threads_take_a_share_of_the_cores_and_a_busy_machine_is_told(monkeypatch, capsys):
    from sarb import runtime

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "cpu_cores", lambda: 8)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert runtime.choose_threads(None, processes=1) == 8
    assert runtime.choose_threads(None, processes=2) == 4  # torchrun: a share per process
    assert runtime.choose_threads(None, processes=16) == 1  # never below 1
    assert runtime.choose_threads(3, processes=2) == 3  # --threads wins
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (11.0, 9.0, 8.0))
    assert runtime.choose_threads(None, processes=1) == 8
    assert "busy (load 11.0 on 8 cores)" in capsys.readouterr().err
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert runtime.choose_threads(None, 1) == runtime.torch.get_num_threads()


def test_the_threads_used_are_recorded(tiny_dataset, tmp_path) -> None:
    import yaml

    from tests.conftest import tiny_train_args

    out = tmp_path / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--epochs", "1", "--threads", "1"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["threads"] == 1


def test_train_help_groups_its_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    sections = [line[:-1] for line in out.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]  # fmt: skip
    assert sections[1:] == ["data", "method (a preset and its parts)", "model", "optimisation",
                            "SARB: blending, prototypes, contrastive loss", "compared methods",
                            "loss settings", "run"]  # fmt: skip
    assert "SPEC" not in out
