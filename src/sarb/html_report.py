"""``report.html``: one self-contained page about a run or a sweep (``sarb report DIR``).

The page opens offline in any browser: the plots (matplotlib) and the image thumbnails
(Pillow) are embedded as base64 PNG, the style sheet is inline, and there is no script.

A run's page shows its settings (``config.yaml``), the training curves (``log.jsonl``), the test
metrics, the AP of every class by name, sorted, beside the number of labels of that class known
in training (the run's own mask), the precision-recall curves of the best and the worst
classes, and a grid of test images with their predicted and true labels: a correct label, a
false positive and a missed label are marked apart. The predictions are those of ``best.pt``
on the test split, recomputed here. A sweep's page shows ``table.md`` and its two figures,
after a warning when its runs computed in more than one environment
(:func:`sarb.report.mixed_environments`).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sarb.errors import SarbError
from sarb.files import atomic_write
from sarb.metrics import TABLE_COLUMNS, precision_recall_curve
from sarb.report import (
    LOSS_FIGURE,
    MAP_FIGURE,
    RESULTS,
    TABLE,
    _figure,
    mixed_environments,
    read_loss_log,
)
from sarb.runs import RunDir

PAGE = "report.html"
GRID_IMAGES = 24
CURVE_CLASSES = 3  # precision-recall curves of this many best and worst classes
THUMB = 160  # px, the longer side of a grid image
THRESHOLD = 0.5  # a predicted label, as in the OP/OR/CP/CR metrics

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cols { columns: 2; column-gap: 32px; } .cols table { break-inside: auto; }
.bar { display: inline-block; height: 9px; background: #4c78a8; vertical-align: middle; }
img.plot { max-width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(176px, 1fr)); gap: 10px; }
.cell { border: 1px solid #ddd; border-radius: 4px; padding: 6px; font-size: 12px; }
.cell img { display: block; margin: 0 auto 4px; max-width: 100%; }
.tag { display: inline-block; border-radius: 3px; padding: 0 4px; margin: 1px; }
.tp { background: #d4edda; } .fp { background: #f8d7da; } .miss { background: #fff3cd; }
.unk { background: #e2e3e5; }
.legend .tag { margin-right: 8px; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: 6px 10px; }
"""


def write_html_report(path: str | Path) -> Path:
    """Write ``report.html`` into a run directory or a sweep directory; return its path.

    A sweep's page embeds its ``table.md`` and figures as :func:`sarb.report.write_report`
    wrote them; a run's page needs its ``best.pt`` and reads its dataset again."""
    folder = Path(path)
    if (folder / RESULTS).is_file():
        body = _sweep_body(folder)
        title = f"Sweep report: {folder.name}"
    elif (folder / RunDir.CONFIG).is_file():
        body, title = _run_body(RunDir(folder))
    else:
        raise SarbError(
            f"{folder}: neither a run directory ({RunDir.CONFIG}) nor a sweep directory ({RESULTS})"
        )
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
    out = folder / PAGE
    atomic_write(out, page, fsync=False)
    return out


# ------------------------------------------------------------------------------------ a run


def _run_body(run: RunDir) -> tuple[str, str]:
    from sarb.api import load_model
    from sarb.data.splits import load_splits
    from sarb.metrics import average_precision, compute_metrics

    if not (run / RunDir.BEST).is_file():
        raise SarbError(f"{run.path}: no {RunDir.BEST} (the run has not finished an epoch)")
    predictor = load_model(run.path, device="cpu")
    cfg, names = predictor.config, predictor.class_names
    splits = load_splits(cfg)
    test = splits.test  # the checkpoint's own dataset: its classes, in its order
    scores = predictor.predict(test.images, batch_size=cfg.batch_size)
    metrics = run.read_metrics()
    recomputed = not metrics  # an unfinished run: best.pt's test metrics, computed here
    if recomputed:
        metrics = compute_metrics(scores, test.labels, cfg.ap, THRESHOLD)
    ap = average_precision(scores, test.labels, cfg.ap)
    known = (splits.train.labels != 0).sum(axis=0)
    known_pos = (splits.train.labels == 1).sum(axis=0)
    title = f"Run report: {run.path.name}"
    facts = [
        f"method <b>{_e(cfg.method)}</b>",
        f"dataset <b>{_e(splits.name)}</b>",
        f"{cfg.known:.0%} of training labels known ({_e(cfg.mask_protocol)})",
        f"{len(splits.train)} train / {len(splits.val)} val / {len(test)} test images",
        f"{len(names)} classes",
    ]
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{" · ".join(facts)}<br>{_e(str(run.path.resolve()))}</p>',
        "<h2>Test metrics</h2>",
        _metrics_table(metrics, recomputed, cfg.ap),
        "<h2>Training curves</h2>",
        _curves(run, metrics.get("best_epoch")),
        "<h2>AP per class</h2>",
        f"<p>Test AP ({_e(cfg.ap)}) of each class, best first, beside its test positives and the"
        " labels of it known in training (positives / all known) under the run's mask.</p>",
        _class_table(names, ap, (test.labels == 1).sum(axis=0), known, known_pos),
        "<h2>Precision-recall curves</h2>",
        _pr_curves(names, ap, scores, test.labels),
        "<h2>Test images</h2>",
        _image_grid(test, scores, names),
        "<h2>Settings</h2>",
        _settings(run),
    ]
    return "\n".join(parts), title


def _metrics_table(metrics: dict[str, Any], recomputed: bool, definition: str) -> str:
    values = [metrics.get(k) for k in TABLE_COLUMNS]
    if recomputed:
        note = (
            "No metrics.json (the run has not finished): best.pt's, computed here,"
            f" threshold {THRESHOLD}."
        )
    else:
        note = (
            f"From metrics.json: epoch {metrics.get('best_epoch')} (selected on"
            f" {_e(str(metrics.get('selected_on', 'val')))}, val mAP"
            f" {_num(metrics.get('val_mAP'))}), threshold {THRESHOLD}."
        )
    head = "".join(f'<th class="num">{k}</th>' for k in TABLE_COLUMNS)
    row = "".join(f'<td class="num">{_num(v)}</td>' for v in values)
    return f"<table><tr>{head}</tr><tr>{row}</tr></table><p>{note} AP: {_e(definition)}.</p>"


def _curves(run: RunDir, best_epoch: Any) -> str:
    epochs, loss = read_loss_log(run)
    if not epochs:
        return f"<p>No training log ({RunDir.LOG}) to plot.</p>"
    fig, (left, right) = _figure(2, width=5.6, height=3.4)
    left.plot(epochs, loss, marker="o", ms=3, label="total loss")
    bce_epochs, bce = read_loss_log(run, "bce")
    if bce_epochs and bce != loss:
        left.plot(bce_epochs, bce, ls="--", marker="o", ms=3, label="BCE term")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (mean per epoch)")
    left.legend(fontsize=8)
    val_epochs, val = read_loss_log(run, "val_mAP")
    right.plot(val_epochs, val, marker="o", ms=3, color="tab:green", label="val mAP")
    if isinstance(best_epoch, int) and best_epoch in val_epochs:
        y = val[val_epochs.index(best_epoch)]
        right.plot([best_epoch], [y], "*", ms=14, color="tab:red", label="selected epoch")
    right.set_xlabel("epoch")
    right.set_ylabel("validation mAP (%)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    note = (
        "<p>Total loss: every term the method optimises (for SARB the blended BCEs and the"
        " contrastive term join when blending starts, so it steps up there); dashed: the BCE term"
        " on the images' own features. Validation mAP ranks the epochs; the star is the one"
        f" kept ({RunDir.BEST}).</p>"
    )
    return _png(fig, "training loss and validation mAP per epoch") + note


def _class_table(
    names: Sequence[str],
    ap: np.ndarray,
    test_pos: np.ndarray,
    known: np.ndarray,
    known_pos: np.ndarray,
) -> str:
    order = sorted(range(len(names)), key=lambda c: (-_finite(ap[c]), names[c]))
    head = (
        '<tr><th>#</th><th>class</th><th class="num">AP</th><th></th>'
        '<th class="num">test positives</th><th class="num">known in training</th></tr>'
    )
    rows = []
    for rank, c in enumerate(order, 1):
        value = ap[c] * 100 if math.isfinite(ap[c]) else None
        bar = f'<span class="bar" style="width:{value:.0f}px"></span>' if value else ""
        rows.append(
            f'<tr><td class="num">{rank}</td><td>{_e(names[c])}</td>'
            f'<td class="num">{_num(value)}</td><td>{bar}</td>'
            f'<td class="num">{int(test_pos[c])}</td>'
            f'<td class="num">{int(known_pos[c])} / {int(known[c])}</td></tr>'
        )
    return f'<div class="cols"><table>{head}{"".join(rows)}</table></div>'


def _pr_curves(names: Sequence[str], ap: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> str:
    defined = [c for c in range(len(names)) if math.isfinite(ap[c])]
    if not defined:
        return "<p>No class has a known positive in the test split.</p>"
    ranked = sorted(defined, key=lambda c: (-ap[c], names[c]))
    k = min(CURVE_CLASSES, (len(ranked) + 1) // 2)
    best, worst = ranked[:k], ranked[::-1][:k][::-1]
    worst = [c for c in worst if c not in best]
    fig, axes = _figure(2, width=5.6, height=3.6)
    for ax, group, title in ((axes[0], best, "best classes"), (axes[1], worst, "worst classes")):
        for c in group:
            recall, precision = precision_recall_curve(scores[:, c], labels[:, c])
            ax.step(recall, precision, where="post", label=f"{names[c]} (AP {ap[c] * 100:.1f})")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"Test precision-recall: {title}", fontsize=10)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8, loc="lower left")
    return _png(fig, "precision-recall curves of the best and worst classes")


def _image_grid(test: Any, scores: np.ndarray, names: Sequence[str]) -> str:
    from PIL import Image

    from sarb.data.dataset import load_rgb

    legend = (
        '<p class="legend"><span class="tag tp">correct</span><span class="tag fp">✗ false'
        ' positive</span><span class="tag miss">○ missed</span><span class="tag unk">? predicted,'
        f" label unknown</span> (predicted: probability ≥ {THRESHOLD}; the first"
        f" {min(GRID_IMAGES, len(test))} of {len(test)} test images)</p>"
    )
    cells = []
    for i in range(min(GRID_IMAGES, len(test))):
        img = load_rgb(test.images[i])
        img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        tags = []
        truth, predicted = test.labels[i], scores[i] >= THRESHOLD
        for c in np.argsort(-scores[i]):
            name = f"{_e(names[c])} {scores[i, c]:.2f}"
            if predicted[c] and truth[c] == 1:
                tags.append(f'<span class="tag tp">{name}</span>')
            elif predicted[c] and truth[c] == -1:
                tags.append(f'<span class="tag fp">✗ {name}</span>')
            elif predicted[c]:
                tags.append(f'<span class="tag unk">? {name}</span>')
            elif truth[c] == 1:
                tags.append(f'<span class="tag miss">○ {name}</span>')
        src = base64.b64encode(buf.getvalue()).decode()
        cells.append(
            f'<div class="cell"><img src="data:image/png;base64,{src}" alt="test image {i}">'
            f"<div>{''.join(tags) or '<i>no label predicted or present</i>'}</div>"
            f'<div class="sub">{_e(Path(test.images[i]).name)}</div></div>'
        )
    return legend + f'<div class="grid">{"".join(cells)}</div>'


def _settings(run: RunDir) -> str:
    saved = run.read_config() or {}
    rows = "".join(f"<tr><td>{_e(str(k))}</td><td>{_e(str(v))}</td></tr>" for k, v in saved.items())
    return (
        f"<p>The run's {RunDir.CONFIG}: <code>sarb train --config {_e(str(run / RunDir.CONFIG))}"
        f'</code> repeats it.</p><div class="cols"><table>{rows}</table></div>'
    )


# ---------------------------------------------------------------------------------- a sweep


def _sweep_body(folder: Path) -> str:
    for name in (TABLE, MAP_FIGURE, LOSS_FIGURE):
        if not (folder / name).is_file():
            raise SarbError(f"{folder / name}: not found (`sarb report {folder}` writes it)")
    parts = [markdown_html((folder / TABLE).read_text())]
    if mixed := mixed_environments(folder):
        parts.insert(0, f'<p class="warning">Warning: {_e(mixed)}</p>')
    for name in (MAP_FIGURE, LOSS_FIGURE):
        data = base64.b64encode((folder / name).read_bytes()).decode()
        parts.append(f'<p><img class="plot" src="data:image/png;base64,{data}" alt="{name}"></p>')
    return "\n".join(parts)


def markdown_html(text: str) -> str:
    """The markdown of ``table.md`` (headings, paragraphs, one-line lists, tables) as HTML."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append(
                "<table><tr>"
                + "".join(f"<th>{_e(c)}</th>" for c in head)
                + "</tr>"
                + "".join(
                    "<tr>" + "".join(f'<td class="num">{_e(c)}</td>' for c in r) + "</tr>"
                    for r in body
                )
                + "</table>"
            )
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{_e(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{_e(line[2:])}</h1>")
        elif line.startswith("- "):
            out.append(f"<p>• {_e(line[2:])}</p>")
        elif line.strip():
            out.append(f"<p>{_e(line)}</p>")
    flush()
    return "\n".join(out)


# ---------------------------------------------------------------------------------- helpers


def _png(fig: Any, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="plot" src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0
