"""``sarb sweep`` and ``sarb report``: the grid, resuming, failures, the table and the figures."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sarb import engine
from sarb.cli import main
from sarb.published import PUBLISHED, dataset_column, paper_avg_map, published_for
from sarb.report import COLUMNS, METRICS, TOP3, format_table, read_results, summarize, write_results

METHODS = ("bce-ignore", "sarb")
KNOWN = (0.3, 0.7)


def _tiny_config(tiny: dict[str, Path], path: Path, sweep: str = "") -> Path:
    """The settings of ``tiny_train_args`` as a config file, 1 epoch."""
    path.write_text(
        f"dataset: manifest\ntrain: {tiny['train']}\ntest: {tiny['test']}\n"
        "backbone: cnn3\nweights: random\ntrainable: all\nimage_size: 32\nembeddings: learned\n"
        "feat_dim: 32\nneck_pool: 1\nepochs: 1\nbatch_size: 8\nlr: 1.0e-3\nworkers: 0\n"
        "blend_start: 0\nproto_every: 1\nnum_prototypes: 3\n" + sweep
    )
    return path


def _sweep_args(config: Path, out: Path, *extra: str) -> list[str]:
    return ["sweep", "--config", str(config), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def swept(tiny_dataset: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real sweep: 2 methods x 2 proportions x 1 seed, the grid given in the config."""
    root = tmp_path_factory.mktemp("sweep")
    grid = "sweep:\n  methods: [bce-ignore, sarb]\n  known: [0.3, 0.7]\n  seeds: 1\n"
    config = _tiny_config(tiny_dataset, root / "tiny.yaml", grid)
    assert main(_sweep_args(config, root / "out")) == 0
    return root / "out"


def _fake_metrics(method: str, known: float, seed: int) -> dict:
    """A plausible metrics.json whose values are a known function of the cell."""
    base = 40.0 + 50.0 * known + (5.0 if method == "sarb" else 0.0) + seed
    rates = {k: base - i for i, k in enumerate(METRICS[1:], start=1)}
    return {
        "mAP": base,
        **rates,
        "top3": {k: v - 2 for k, v in rates.items()},
        "ap_definition": "voc",
        "method": method,
        "dataset": "tiny",
        "known": known,
        "seed": seed,
        "best_epoch": 1,
        "val_mAP": base + 1,
    }


def _fake_train(calls: list, fail: tuple[str, float] | None = None):
    """A stand-in for ``engine.fit`` writing what a run writes, failing for one cell."""

    def train(cfg, quiet=False, resume=False):
        calls.append((cfg.method, cfg.known, cfg.seed))
        if fail and (cfg.method, cfg.known) == fail:
            raise RuntimeError("simulated crash\nsecond line")
        run_dir = Path(cfg.out)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(f"dataset: {cfg.dataset}\nmethod: {cfg.method}\n")
        (run_dir / "log.jsonl").write_text(
            "".join(json.dumps({"epoch": e, "loss": 1.0 / e}) + "\n" for e in (1, 2, 3))
        )
        result = _fake_metrics(cfg.method, cfg.known, cfg.seed)
        (run_dir / "metrics.json").write_text(json.dumps(result))
        return result

    return train


def test_sweep_writes_one_row_per_cell_with_every_metric(swept: Path) -> None:
    with (swept / "results.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == COLUMNS
    assert {"mAP", "OP", "OR", "OF1", "CP", "CR", "CF1", *TOP3} <= set(reader.fieldnames)
    assert [(r["method"], float(r["known"]), int(r["seed"])) for r in rows] == [
        (m, k, 0) for m in METHODS for k in KNOWN
    ]
    for r in rows:
        assert r["dataset"] == "manifest"
        assert all(math.isfinite(float(r[k])) for k in (*METRICS, *TOP3))
        metrics = json.loads((swept / r["run_dir"] / "metrics.json").read_text())
        assert float(r["mAP"]) == metrics["mAP"]
        assert float(r["top3_CF1"]) == metrics["top3"]["CF1"]
        assert int(r["best_epoch"]) == metrics["best_epoch"]
    assert (swept / "runs" / "sarb" / "known0.3" / "seed0" / "log.jsonl").is_file()
    for name in ("table.md", "map_vs_known.png", "loss_curves.png"):
        assert (swept / name).stat().st_size > 0


def test_rerun_skips_every_finished_cell(
    swept: Path, tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(engine, "fit", no_training)
    table = (swept / "table.md").read_bytes()
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    args = _sweep_args(config, swept, "--methods", ",".join(METHODS), "--known", "0.3,0.7")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"^\[\d/4\] .*: done before", err, re.M)) == 4
    assert "FAILED" not in err
    assert re.search(r"\[1/4\] bce-ignore known=0\.3 seed=0: done before \(mAP [\d.]+\)", err)
    assert (swept / "table.md").read_bytes() == table
    assert not (swept / "failures.txt").exists()


def test_a_failing_cell_is_reported_and_the_others_run(
    tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    calls: list = []
    monkeypatch.setattr(engine, "fit", _fake_train(calls, fail=("sarb", 0.3)))
    args = _sweep_args(config, out, "--methods", "bce-ignore,sarb", "--known", "0.3,0.7")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert len(calls) == 4  # the failure stopped nothing
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert failed == [
        "[3/4] sarb known=0.3 seed=0: FAILED (RuntimeError: simulated crash second line)"
    ]
    assert re.search(r"\[4/4\] sarb known=0\.7 seed=0: mAP 80\.0 \(\d+ s\); last cell", err)
    assert re.search(r"\[1/4\] bce-ignore known=0\.3 seed=0: mAP 55\.0 \(\d+ s\); ETA", err)
    assert (out / "failures.txt").read_text() == (
        "sarb known=0.3 seed=0: RuntimeError: simulated crash second line\n"
    )
    assert "simulated crash" in (out / "runs/sarb/known0.3/seed0/error.txt").read_text()
    rows = read_results(out / "results.csv")
    assert [(r["method"], r["known"]) for r in rows] == [
        ("bce-ignore", 0.3),
        ("bce-ignore", 0.7),
        ("sarb", 0.7),
    ]

    # another sweep into the folder (another grid) keeps the record of the first one's failure
    other = _sweep_args(config, out, "--methods", "bce-ignore", "--known", "0.3")
    assert main(other) == 0
    assert "sarb known=0.3 seed=0: RuntimeError" in (out / "failures.txt").read_text()
    error = (out / "runs/sarb/known0.3/seed0/error.txt").read_text().splitlines()
    assert error[0] == "RuntimeError: simulated crash second line"  # then the traceback
    assert error[2] == "Traceback (most recent call last):"

    # a rerun retries only the failed cell; the failure record goes
    calls.clear()
    monkeypatch.setattr(engine, "fit", _fake_train(calls))
    assert main(args) == 0
    assert calls == [("sarb", 0.3, 0)]
    assert not (out / "failures.txt").exists()
    assert not (out / "runs/sarb/known0.3/seed0/error.txt").exists()
    assert len(read_results(out / "results.csv")) == 4


def test_a_cell_that_another_process_trains_is_left_to_it(
    tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    from sarb.runs import RunDir, RunInUse

    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    calls: list = []
    train = _fake_train(calls)

    def fit(cfg, quiet=False, resume=False):
        if cfg.known == 0.9 and len(calls) == 1:  # another process took it after the check
            raise RunInUse(f"{cfg.out}: in use by another sarb run (pid 1 on host)")
        return train(cfg, quiet, resume)

    monkeypatch.setattr(engine, "fit", fit)
    args = _sweep_args(config, out, "--methods", "bce-ignore", "--known", "0.3,0.7,0.9")
    busy = RunDir(out / "runs" / "bce-ignore" / "known0.3" / "seed0")
    with busy.lock():  # as a second sweep into the same folder holds the cell it trains
        assert main(args) == 0
    err = capsys.readouterr().err
    assert calls == [("bce-ignore", 0.7, 0)]
    held = r"^\[1/3\] bce-ignore known=0\.3 seed=0: being trained by another process \(pid \d+ on "
    assert re.search(held + r".*\), skipped$", err, re.M)
    assert "[3/3] bce-ignore known=0.9 seed=0: being trained by another process, skipped" in err
    assert "1 trained, 0 skipped (finished earlier), 2 left to another process, 0 failed" in err
    assert not (out / "failures.txt").exists()
    assert not (busy.path / "error.txt").exists()
    assert busy.holder() is None  # released: a rerun trains it
    assert main(args) == 0
    assert calls[1:] == [("bce-ignore", 0.3, 0), ("bce-ignore", 0.9, 0)]


def test_the_eta_leaves_out_cells_in_training_elsewhere(
    tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    from sarb.runs import RunDir

    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    monkeypatch.setattr(engine, "fit", _fake_train([]))
    args = _sweep_args(config, out, "--methods", "bce-ignore", "--known", "0.3,0.7")
    with RunDir(out / "runs" / "bce-ignore" / "known0.7" / "seed0").lock():
        assert main(args) == 0
    assert re.search(r"\[1/2\] bce-ignore known=0\.3 seed=0: mAP [\d.]+ \(\d+ s\); last cell$",
                     capsys.readouterr().err, re.M)  # fmt: skip


def test_runs_of_two_environments_are_a_warning(
    tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    """Paired differences across installations mislead: a sweep folder whose runs recorded
    two environments is said so by ``sarb sweep`` and ``sarb report``, naming what differs."""
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    train = _fake_train([])

    def fit(cfg, quiet=False, resume=False):
        result = train(cfg, quiet, resume)
        result["environment"] = {"torch": "2.14.1", "threads": 2 if cfg.seed == 2 else 1}
        (Path(cfg.out) / "metrics.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(engine, "fit", fit)
    args = _sweep_args(config, out, "--methods", "bce-ignore", "--known", "0.5", "--seeds", "2")
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().err  # one environment so far
    assert main([*args[:-1], "3"]) == 0  # seed 2 on another thread count
    warning = (
        f"sarb: warning: {out}: the runs computed in more than one environment "
        "(threads: 1 (2 runs), 2 (1 run)); runs repeat only within one"
    )
    assert warning in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert warning in capsys.readouterr().err
    assert "more than one environment (threads: 1 (2 runs)" in (out / "report.html").read_text()


def test_two_sweeps_into_one_folder_share_the_grid(tiny_dataset, tmp_path) -> None:
    """Two real processes at once, as on two cores: every cell trained once, none failed, and
    the table that the last one leaves has every cell."""
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sarb", *_sweep_args(config, out, "--known", "0.2,0.4,0.6,0.8")]
    cmd += ["--methods", "bce-ignore", "--seeds", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]  # fmt: skip
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    trained = [len(re.findall(r"^\[\d/8\] .*: mAP [\d.]+ \(", e, re.M)) for e in errs]
    assert sum(trained) == 8, errs  # each cell once, by one of the two
    assert not (out / "failures.txt").exists()
    rows = read_results(out / "results.csv")
    assert sorted((r["known"], r["seed"]) for r in rows) == [
        (k, s) for k in (0.2, 0.4, 0.6, 0.8) for s in (0, 1)
    ]


def _table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the first table of ``text`` (the results; the paired differences follow)."""
    first = text[text.index("| ") :].split("\n\n")[0]
    lines = [line for line in first.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_table_average_is_the_mean_of_its_cells(swept: Path) -> None:
    rows = _table_rows((swept / "table.md").read_text())
    assert set(rows) == set(METHODS)
    for row in rows.values():
        cells = [float(row[p]) for p in ("30%", "70%")]
        assert float(row["Avg."]) == pytest.approx(np.mean(cells), abs=0.051)
    results = read_results(swept / "results.csv")
    for s in summarize(results):
        cell_means = [s.cells[k]["mAP"].mean for k in KNOWN]
        assert s.avg["mAP"].mean == pytest.approx(np.mean(cell_means), abs=1e-12)
        assert s.avg["mAP"].std is None  # one seed: the mean only
        assert "±" not in _table_rows(format_table(results))[s.method]["Avg."]


def test_table_std_over_seeds(tmp_path: Path) -> None:
    rows = []
    for seed in (0, 1, 2):
        for known in (0.1, 0.5, 0.9):
            m = _fake_metrics("sarb", known, seed)
            m["mAP"] += 3.0 * seed * known  # seeds disagree more at high proportions
            rows.append(
                {
                    "dataset": "demo",
                    "run_dir": f"runs/{seed}",
                    **m,
                    **{f"top3_{k}": v for k, v in m["top3"].items()},
                }
            )
    write_results(tmp_path / "results.csv", rows)
    results = read_results(tmp_path / "results.csv")
    (s,) = summarize(results)
    per_seed = [np.mean([r["mAP"] for r in results if r["seed"] == seed]) for seed in (0, 1, 2)]
    assert s.avg["mAP"].mean == pytest.approx(np.mean(per_seed))
    assert s.avg["mAP"].std == pytest.approx(np.std(per_seed, ddof=1))
    at_09 = [r["mAP"] for r in results if r["known"] == 0.9]
    assert s.cells[0.9]["mAP"].std == pytest.approx(np.std(at_09, ddof=1))
    row = _table_rows(format_table(results))["sarb"]
    assert row["90%"] == f"{np.mean(at_09):.1f} ± {np.std(at_09, ddof=1):.1f}"
    assert "paper" not in row  # demo is not a paper dataset


def test_report_rebuilds_the_table_byte_identically(swept: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(swept, copy)
    table = (copy / "table.md").read_bytes()
    for name in ("table.md", "map_vs_known.png", "loss_curves.png"):
        (copy / name).unlink()
    for metrics in copy.glob("runs/*/*/*/metrics.json"):
        metrics.unlink()  # the report reads results.csv (and the logs), nothing else
    assert main(["report", str(copy)]) == 0
    assert (copy / "table.md").read_bytes() == table
    for name in ("map_vs_known.png", "loss_curves.png"):
        assert (copy / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (copy / name).stat().st_size > 1000

    alone = tmp_path / "alone"  # results.csv without any run: the table still matches
    alone.mkdir()
    shutil.copy(swept / "results.csv", alone)
    assert main(["report", str(alone)]) == 0
    assert (alone / "table.md").read_bytes() == table
    assert (alone / "loss_curves.png").stat().st_size > 0


def test_published_numbers_go_in_the_paper_column(tmp_path: Path) -> None:
    assert paper_avg_map("sarb", "coco2014") == 77.9
    assert paper_avg_map("sarb", "coco") == 77.9
    assert paper_avg_map("sarb", "voc2007") == 90.7
    assert paper_avg_map("sarb", "vg200") == 45.6
    assert paper_avg_map("ml-gcn", "coco2014") == paper_avg_map("gcn-ml", "coco") == 74.4
    assert paper_avg_map("bce-ignore", "coco2014") is None
    assert paper_avg_map("sarb", "demo") is None
    assert dataset_column("COCO-2014") == "COCO"
    assert len(PUBLISHED) == 13  # six systems of Table 1, seven of Table 2
    rows = []
    for method in ("sarb", "bce-ignore"):
        m = _fake_metrics(method, 0.5, 0)
        rows.append({**m, "dataset": "coco2014", "run_dir": ""})
    write_results(tmp_path / "results.csv", rows)
    table = _table_rows(format_table(read_results(tmp_path / "results.csv")))
    assert table["sarb"]["paper"] == "77.9"
    assert table["bce-ignore"]["paper"] == "-"


def test_interrupted_cell_resumes(tiny_dataset, tmp_path: Path, capsys) -> None:
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    args = _sweep_args(config, out, "--methods", "bce-ignore", "--known", "0.5")
    assert main(args) == 0
    cell = out / "runs" / "bce-ignore" / "known0.5" / "seed0"
    before = json.loads((cell / "metrics.json").read_text())
    (cell / "metrics.json").unlink()  # as if killed after the last checkpoint
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming the interrupted run" in capsys.readouterr().err
    after = json.loads((cell / "metrics.json").read_text())
    assert after["mAP"] == before["mAP"]


def test_seeds_take_a_count_a_range_or_a_list() -> None:
    from sarb.sweep import parse_seeds

    assert parse_seeds("3") == parse_seeds(3) == [0, 1, 2]
    assert parse_seeds("3-4") == parse_seeds("3,4") == parse_seeds([3, 4]) == [3, 4]
    assert parse_seeds("2-2") == [2] and parse_seeds("5,1") == [5, 1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "bce-ignore,nope"], "unknown method 'nope'"),
        (["--methods", "sarb", "--known", "0.5,1.5"], "--known must be in (0, 1], got 1.5"),
        (["--methods", "sarb", "--seeds", "0"], "--seeds must be >= 1"),
        (["--methods", "sarb", "--seed", "1"], "use --seeds N"),
        (["--methods", "sarb", "--seeds", "4-2"], "--seeds 4-2: the range's first seed is above"),
        (["--methods", "sarb", "--seeds", "1,x"], "--seeds: expected a number of seeds N, a"),
        (["--methods", "sarb", "--seeds", "3,3"], "--seeds 3,3: a seed is listed twice"),
        (["--methods", "sarb", "--seeds=-1,2"], "--seeds -1,2: seeds are >= 0"),
        ([], "needs --methods"),
    ],
)
def test_bad_grid_is_one_line_error(tiny_dataset, tmp_path, capsys, extra, message) -> None:
    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    assert main(_sweep_args(config, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sarb: error: ") and message in err[0], err
    assert not (tmp_path / "out" / "runs").exists()


def test_packaged_sweep_configs_resolve() -> None:
    from sarb.cli import build_parser
    from sarb.sweep import PAPER_PROPORTIONS, plan_from_args

    parse = build_parser().parse_args
    paper = plan_from_args(parse(["sweep", "--config", "sweep_paper", "--out", "x"]))
    assert paper.known == list(PAPER_PROPORTIONS) and paper.seeds == [0]
    assert "sarb" in paper.methods and len(paper.methods) == 13
    # every system of the paper's tables, each with its published number
    assert {published_for(m).name for m in paper.methods} == {p.name for p in PUBLISHED}
    cfg = paper.config(paper.cells()[0])
    assert (cfg.backbone, cfg.image_size, cfg.epochs, cfg.mask_seed) == ("resnet101", 448, 20, 0)
    quick = plan_from_args(
        parse(
            [
                "sweep",
                "--config",
                "quick",
                "--methods",
                "sarb,ssgrl",
                "--known",
                "0.9,0.1",
                "--seeds",
                "2",
                "--out",
                "x",
            ]
        )
    )
    assert quick.known == [0.1, 0.9] and quick.seeds == [0, 1]
    cfg = quick.config(quick.cells()[-1])
    assert (cfg.method, cfg.known, cfg.seed, cfg.epochs) == ("ssgrl", 0.9, 1, 6)
    assert cfg.out == str(Path("x", "runs", "ssgrl", "known0.9", "seed1"))


def test_eta_uses_the_mean_time_of_each_method() -> None:
    from sarb.sweep import Cell, _eta

    times = {"a": [10.0, 20.0], "b": [90.0]}  # a: 15 s a cell, b: 90 s, overall 40 s
    left = [Cell("a", 0.5, 0), Cell("b", 0.5, 0), Cell("c", 0.1, 0)]
    assert _eta(left, times) == pytest.approx(15 + 90 + 40)


def test_unfinished_cells_are_marked(tmp_path: Path) -> None:
    rows = []
    for method, known, seed in [("a", 0.1, 0), ("a", 0.1, 1), ("a", 0.9, 0), ("b", 0.1, 0)]:
        m = _fake_metrics(method, known, seed)
        rows.append({**m, "method": method, "dataset": "demo", "run_dir": ""})
    write_results(tmp_path / "results.csv", rows)
    text = format_table(read_results(tmp_path / "results.csv"))
    table = _table_rows(text)
    assert table["a"]["90%"].endswith("*")  # one seed of two
    assert table["b"]["90%"] == "-" and table["b"]["Avg."].endswith("†")  # no 90% run
    assert "*: fewer seeds" in text and "†: the average over fewer proportions" in text


def test_sweep_help_offers_seeds_not_seed(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    assert "--seeds" in out and "--seed " not in out and "--seed\n" not in out


def test_a_cell_written_by_sarb_0_1_matches_its_preset(tmp_path) -> None:
    """An old config.yaml (``augment`` = crop and flip, no parts) is compared as it was meant."""
    from sarb.config import resolve_config
    from sarb.runs import RunDir
    from sarb.sweep import config_differences

    cfg = resolve_config(None, method="sarb", crop_flip=False, known=0.1)
    run = RunDir(tmp_path)
    (tmp_path / RunDir.CONFIG).write_text("method: sarb\naugment: false\nknown: 0.1\n")
    assert config_differences(run, cfg) == []
    (tmp_path / RunDir.CONFIG).write_text("method: ssgrl\naugment: true\nknown: 0.1\n")
    assert sorted(d.split()[0] for d in config_differences(run, cfg)) == [
        "augment", "crop_flip", "method"
    ]  # fmt: skip


def test_single_positive_is_a_column_beside_the_fractions(tiny_dataset, tmp_path, capsys) -> None:
    from sarb.runs import RunDir

    config = _tiny_config(tiny_dataset, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    args = _sweep_args(config, out, "--methods", "an-ls", "--known", "single-positive,0.5")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "[1/2] an-ls known=0.5 seed=0" in err and "[2/2] an-ls single-positive seed=0" in err
    rows = read_results(out / "results.csv")
    assert [r["known"] for r in rows] == [0.5, "single-positive"]
    saved = RunDir(out / "runs/an-ls/single-positive/seed0").read_config()
    assert saved["mask_protocol"] == "single-positive" and saved["known"] == 1.0
    table = (out / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert header.split(" | ")[1:3] == ["50%", "single positive"]
    row = _table_rows(table)["an-ls"]
    assert row["Avg."] == row["50%"]  # the average is over the fractions only
    assert (out / "map_vs_known.png").stat().st_size > 0


def test_a_cell_selected_before_blending_is_marked() -> None:
    from sarb.report import result_row

    rows = [
        result_row({**_fake_metrics("sarb", 0.1, s), "selected_before_blending": s == 0}, "t", "r")
        for s in (0, 1)
    ]
    text = format_table(rows)
    assert _table_rows(text)["sarb"]["10%"].endswith("‡")
    assert "before blending starts" in text
    assert "‡" not in format_table([result_row(_fake_metrics("sarb", 0.1, 0), "t", "r")])


def test_methods_of_one_family_share_a_line_style_and_differ_by_marker() -> None:
    from sarb.report import line_styles, method_family

    assert method_family("sarb") == "csrl" and method_family("linear+hill") == "linear"
    styles = line_styles(["ssgrl", "sarb", "bce-ignore", "partial-bce", "gcn-ml", "csrl+em"])
    assert styles[0]["linestyle"] == styles[1]["linestyle"] == styles[5]["linestyle"] == "-"
    assert styles[2]["linestyle"] == styles[3]["linestyle"] == "--"
    assert styles[4]["linestyle"] == ":"
    assert len({styles[i]["marker"] for i in (0, 1, 5)}) == 3  # three csrl methods, 3 markers


def test_table_gives_per_seed_paired_differences_to_ssgrl_and_the_validation_map() -> None:
    from sarb.report import format_table, paired_difference

    def row(method: str, seed: int, test: float, val: float) -> dict:
        return {"dataset": "demo", "method": method, "known": 0.1, "seed": seed, "mAP": test,
                "val_mAP": val, "ap_definition": "voc"}  # fmt: skip

    # seed noise (shared by both methods) is large, the paired effect small and steady
    rows = [row("sarb", 0, 41.0, 40.0), row("sarb", 1, 51.5, 50.0), row("sarb", 2, 46.0, 45.0),
            row("ssgrl", 0, 40.0, 39.0), row("ssgrl", 1, 50.0, 49.0)]  # fmt: skip
    diff = paired_difference(rows, "sarb", "ssgrl", 0.1)
    assert (diff.n, diff.mean) == (2, pytest.approx(1.25))  # seed 2: no ssgrl run to pair with
    assert diff.std == pytest.approx(np.std([1.0, 1.5], ddof=1))
    table = format_table(rows)
    assert "paired differences of test mAP to ssgrl" in table
    assert "| sarb | +1.2 ± 0.4 | 45.0 ± 5.0 |" in table
    assert "| ssgrl |  | 44.0 ± 7.1 |" in table
    assert "paired" not in format_table([r for r in rows if r["method"] == "sarb"])


def test_paired_table_gives_the_average_over_proportions_per_seed() -> None:
    from sarb.report import format_table

    def row(method: str, known: float, seed: int, test: float) -> dict:
        return {"dataset": "demo", "method": method, "known": known, "seed": seed, "mAP": test,
                "val_mAP": test + 1.0, "ap_definition": "voc"}  # fmt: skip

    rows = [row("ssgrl", k, s, 50.0 + 10 * s + 20 * k) for k in (0.1, 0.5) for s in (0, 1)]
    rows += [row("sarb", 0.1, 0, 54.0), row("sarb", 0.5, 0, 62.0)]  # seed 0: +2 on the average
    rows += [row("sarb", 0.1, 1, 68.0), row("sarb", 0.5, 1, 72.0)]  # seed 1: +4
    rows += [row("sarb", 0.1, 2, 70.0)]  # seed 2 lacks 50%: not in the average
    table = format_table(rows)
    assert "Avg. test - ssgrl | Avg. val mAP |" in table
    table = table.split("The same of validation mAP")[0]  # the test split's paired table
    sarb = [line for line in table.splitlines() if line.startswith("| sarb |")][-1]
    assert sarb.endswith("| +3.0 ± 1.4 | 65.0 ± 8.5 | 4/4 |")  # seeds 0-1: 59 and 71 val


def test_report_pairs_the_validation_split_too_on_which_methods_are_chosen() -> None:
    from sarb.report import format_table

    def row(method: str, known: float, seed: int, test: float, val: float) -> dict:
        return {"dataset": "demo", "method": method, "known": known, "seed": seed, "mAP": test,
                "val_mAP": val, "ap_definition": "voc"}  # fmt: skip

    rows = [row("ssgrl", k, s, 50.0 + s, 60.0 + 5 * s) for k in (0.1, 0.5) for s in (0, 1)]
    # ahead on test, behind on validation: the two tables must not be confused
    rows += [row("sarb", 0.1, 0, 52.0, 59.0), row("sarb", 0.1, 1, 53.0, 63.0)]
    rows += [row("sarb", 0.5, 0, 51.0, 61.0), row("sarb", 0.5, 1, 52.0, 65.0)]
    table = format_table(rows)
    assert "The same of validation mAP to ssgrl" in table
    assert "| method | 10% val - ssgrl | 50% val - ssgrl | Avg. val - ssgrl |" in table
    val = [line for line in table.splitlines() if line.startswith("| sarb |")][-1]
    # 10%: -1, -2; 50%: +1, 0; the average per seed: 0, -1; pairs ahead on val: 1 of 4
    assert val == "| sarb | -1.5 ± 0.7 | +0.5 ± 0.7 | -0.5 ± 0.7 | 1/4 |"
    test = [line for line in table.splitlines() if line.startswith("| sarb |")][-2]
    assert test.startswith("| sarb | +2.0 ± 0.0 | 61.0 ± 2.8 |")


def test_paired_table_counts_the_pairs_a_method_wins() -> None:
    from sarb.report import format_table

    def row(method: str, known: float, seed: int, test: float) -> dict:
        return {"dataset": "demo", "method": method, "known": known, "seed": seed, "mAP": test,
                "val_mAP": test, "ap_definition": "voc"}  # fmt: skip

    rows = [row("ssgrl", k, s, 50.0) for k in (0.1, 0.5) for s in (0, 1, 2)]
    rows += [row("sarb", 0.1, 0, 51.0), row("sarb", 0.1, 1, 49.0), row("sarb", 0.1, 2, 50.0)]
    rows += [row("sarb", 0.5, 0, 52.0), row("sarb", 0.5, 1, 53.0)]  # seed 2 lacks 50%: 5 pairs
    table = format_table(rows)
    assert "| pairs ahead of ssgrl |" in table
    table = table.split("The same of validation mAP")[0]  # the test split's paired table
    sarb = [line for line in table.splitlines() if line.startswith("| sarb |")][-1]
    assert sarb.endswith("| 3/5 |")  # a tie (seed 2 at 10%) is not a win
    ssgrl = [line for line in table.splitlines() if line.startswith("| ssgrl |")][-1]
    assert ssgrl.endswith("|  |")


def test_report_takes_paired_differences_to_the_baseline_asked_for(tmp_path) -> None:
    rows = [{**r, "dataset": "demo", "known": 0.1, "ap_definition": "voc"}
            for r in ({"method": "sarb", "seed": 0, "mAP": 50.0, "val_mAP": 49.0},
                      {"method": "sarb", "seed": 1, "mAP": 54.0, "val_mAP": 52.0},
                      {"method": "ssgrl", "seed": 0, "mAP": 40.0, "val_mAP": 39.0},
                      {"method": "ssgrl", "seed": 1, "mAP": 41.0, "val_mAP": 40.0})]  # fmt: skip
    write_results(tmp_path / "results.csv", rows)
    assert main(["report", str(tmp_path), "--baseline", "sarb"]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "paired differences of test mAP to sarb" in table
    assert "| ssgrl | -11.5 ± 2.1 |" in table
    assert main(["report", str(tmp_path), "--baseline", "kggr"]) == 2
    assert "to sarb" in (tmp_path / "table.md").read_text()  # the refused call wrote nothing
    # a baseline that one dataset lacks: that dataset's table names the one it used instead
    other = [{**r, "dataset": "glyphs", "method": "kggr" if r["method"] == "sarb" else "ssgrl"}
             for r in rows]  # fmt: skip
    write_results(tmp_path / "results.csv", rows + other)
    assert main(["report", str(tmp_path), "--baseline", "sarb"]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "paired differences of test mAP to sarb (mean" in table
    assert "paired differences of test mAP to ssgrl (sarb has no runs here)" in table
