"""``sarb report DIR`` writes DIR/report.html: one offline page about a run or a sweep, checked
as text and rendered by headless Chromium (skipped only where Chromium is not installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarb.cli import main
from sarb.html_report import PAGE, markdown_html
from sarb.metrics import average_precision
from sarb.metrics import precision_recall_curve as pr_curve
from sarb.report import RESULTS, write_results
from tests.conftest import CLASSES, tiny_train_args

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    assert main([*tiny_train_args(tiny_dataset, out, "sarb"), "--max-steps", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def page(run) -> str:
    assert main(["report", str(run)]) == 0
    return (run / PAGE).read_text()


def test_run_page_has_every_section(page):
    for heading in ("Test metrics", "Training curves", "AP per class", "Precision-recall curves",
                    "Test images", "Settings"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in page
    assert all(f"<td>{name}</td>" in page for name in CLASSES)  # AP per class, by name
    assert "known in training" in page and "method <b>sarb</b>" in page
    assert "false positive" in page and "missed" in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,', page)
    assert len(images) == 2 + 16  # two plots, and the 16 test images of the tiny dataset


def test_run_page_is_self_contained(page):
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched
    assert "url(" not in page


def test_class_table_is_sorted_by_ap(page):
    rows = re.findall(r'<td class="num">\d+</td><td>(\w+)</td><td class="num">([\d.-]+)</td>', page)
    assert sorted(name for name, _ in rows) == sorted(CLASSES)
    values = [float(v) for _, v in rows if v != "-"]
    assert values == sorted(values, reverse=True)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_chromium_renders_the_page(run, page, tmp_path):
    shot = tmp_path / "page.png"
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command = [CHROMIUM, *flags, "--window-size=1200,2400", f"--screenshot={shot}",
               (run / PAGE).as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as img:
        assert img.size == (1200, 2400)
        pixels = np.asarray(img.convert("L"), dtype=np.float64)
    top = pixels[:1200]  # headings, the metrics, both plots: far from a blank page
    assert top.std() > 20 and (top < 100).mean() > 0.005


def test_sweep_page(tmp_path, capsys):
    rows = [
        {"dataset": "demo", "method": m, "known": k, "seed": 0, "mAP": 50.0 + 10 * k + j,
         "ap_definition": "voc", "run_dir": f"runs/{m}-{k}"}
        for j, m in enumerate(("ssgrl", "sarb")) for k in (0.1, 0.5)
    ]  # fmt: skip
    write_results(tmp_path / RESULTS, rows)
    assert main(["report", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "| sarb |" in out and str(tmp_path / PAGE) in err
    page = (tmp_path / PAGE).read_text()
    assert "<h2>demo</h2>" in page and "<td>sarb</td>" not in page  # a table cell is numeric
    assert '<td class="num">sarb</td>' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2


def test_not_a_run_or_sweep(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither a run directory" in err and str(tmp_path) in err


def test_pr_curve_matches_average_precision():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # ties
    labels = np.where(rng.random(60) < 0.4, 1, -1)
    labels[:5] = 0  # unknown: left out
    recall, precision = pr_curve(scores, labels)
    assert recall[0] == 0 and precision[0] == 1 and recall[-1] == 1
    area = float(np.sum(np.diff(recall) * precision[1:]))
    expected = average_precision(scores[:, None], labels[:, None], "sklearn")[0]
    assert area == pytest.approx(expected)


def test_markdown_table():
    text = "# T\n\nA caption.\n\n| m | 10% |\n|---|---:|\n| a<b | 1.0 |\n\n- a note\n"
    assert markdown_html(text) == (
        "<h1>T</h1>\n<p>A caption.</p>\n<table><tr><th>m</th><th>10%</th></tr>"
        '<tr><td class="num">a&lt;b</td><td class="num">1.0</td></tr></table>\n<p>• a note</p>'
    )


def test_unfinished_run_page_computes_every_metric(run, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "metrics.json").unlink()
    assert main(["report", str(unfinished)]) == 0
    page = (unfinished / PAGE).read_text()
    assert "No metrics.json" in page
    table = page.split("<h2>Test metrics</h2>")[1].split("</table>")[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', table)
    assert len(cells) == 7 and "-" not in cells  # mAP and the six rates, all defined
