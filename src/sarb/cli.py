"""The ``sarb`` command line. Every user error ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sarb import __version__
from sarb.errors import SarbError
from sarb.files import atomic_write


def _cmd_train(args: argparse.Namespace) -> int:
    from sarb.config import resolve_config
    from sarb.engine import fit
    from sarb.metrics import format_metrics
    from sarb.runtime import pick_device

    if args.resume:
        cfg = _resume_config(args)
        result = fit(cfg, resume=True)
    else:
        cfg = resolve_config(args)
        pick_device(cfg.device)  # a wrong --device is the one line printed, not after the note
        if cfg.dataset == "demo" and not args.config and os.environ.get("RANK", "0") == "0":
            print(
                f"sarb: note: the demo with the paper's model ({cfg.backbone} at "
                f"{cfg.image_size} px) is slow on a CPU; `--config demo` has the demo's settings",
                file=sys.stderr,
            )
        result = fit(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process reports
        print(format_metrics({cfg.method: result}))
        print(f"run directory: {result['run_dir']}", file=sys.stderr)
    return 0


def _resume_config(args: argparse.Namespace):
    """The configuration a ``--resume RUN`` continues: the run's own ``config.yaml``; flags may
    extend it (``--epochs``) or change how it runs (device, workers, compile), nothing else."""
    import dataclasses

    from sarb.config import (
        TrainConfig,
        absolute_paths,
        flag,
        load_yaml,
        resolve_config,
        resume_change,
    )
    from sarb.runs import RunDir

    run = RunDir(args.resume)
    if not run.has_checkpoint():
        raise SarbError(f"{run.path}: no {RunDir.LAST} to resume from")
    if args.config:
        raise SarbError(f"--resume continues {run.path} with its own {RunDir.CONFIG}; no --config")
    if args.overwrite or (args.out and Path(args.out).resolve() != run.path.resolve()):
        raise SarbError(f"--resume continues {run.path} in its own files; --out and --overwrite "
                        "are for new runs")  # fmt: skip
    saved = load_yaml(run / RunDir.CONFIG)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}  # fmt: skip
    before = absolute_paths(resolve_config(None, **saved))
    after = absolute_paths(resolve_config(None, **{**saved, **given}))
    if change := resume_change(dataclasses.asdict(before), dataclasses.asdict(after)):
        name, old, new = change
        raise SarbError(
            f"--resume continues {run.path} as it was configured: --{flag(name)} {new} "
            f"differs from its {RunDir.CONFIG} ({old}); start a new run with --out"
        )
    return dataclasses.replace(after, out=str(run.path))


DEMO_METHODS = ("ssgrl", "sarb")


def demo_config_path() -> Path:
    """The packaged demo settings (``configs/demo.yaml`` in the repository)."""
    from sarb.config import config_path

    return config_path("demo")


def _cmd_demo(args: argparse.Namespace) -> int:
    from sarb.config import load_yaml, resolve_config
    from sarb.engine import fit
    from sarb.metrics import format_metrics

    settings = load_yaml(demo_config_path())
    rows = {}
    for method in args.methods.split(","):
        out = str(Path(args.out) / method)
        values = {**settings, "method": method, "out": out, "overwrite": True}
        if args.threads is not None:
            values["threads"] = args.threads
        cfg = resolve_config(None, **values)
        print(
            f"== {method}: training on the demo dataset, {cfg.known:.0%} known labels",
            file=sys.stderr,
        )
        rows[method] = fit(cfg)
    print(f"\nDemo test split, {cfg.known:.0%} known training labels ({cfg.ap} AP, percent):")
    print(format_metrics(rows))
    from sarb.data.demo import demo_root
    from sarb.data.example import write_example

    last = Path(args.out) / method
    example = write_example(demo_root(cfg.cache_dir), Path(args.out) / "example").as_posix()
    print(
        f"\nrun directories: {', '.join(str(Path(args.out) / m) for m in rows)}\n"
        f"an example of your own data (images, CSV manifests): {example}\nnext:\n"
        f"  sarb eval --checkpoint {last}\n"
        f"  sarb predict --checkpoint {last} {example}/photos --out predictions.csv\n"
        f"  sarb train --dataset manifest --train {example}/train.csv --val {example}/val.csv"
        f" --test {example}/test.csv --config demo --out runs/mine",
        file=sys.stderr,
    )
    return 0


def _cmd_masks(args: argparse.Namespace) -> int:
    from sarb.data.encodings import read_labels, write_labels
    from sarb.data.partial import SINGLE_POSITIVE, mask_labels

    if args.known is None and args.protocol != SINGLE_POSITIVE:
        raise SarbError(f"--known is required with --protocol {args.protocol}")
    full = read_labels(args.labels, args.encoding, complete=True)
    known = 1.0 if args.known is None else args.known
    partial = mask_labels(full, known, seed=args.seed, protocol=args.protocol)
    write_labels(args.out, partial, args.encoding)
    kept = (partial != 0).mean()
    empty = int((partial == 0).all(axis=1).sum()) if partial.ndim == 2 else 0
    print(
        f"{args.out}: {partial.shape[0]} x {partial.shape[1]}, {kept:.1%} of labels known"
        + (f"; {empty} images without a known label" if empty else ""),
        file=sys.stderr,
    )
    return 0


def _read_scores(path: str):
    """A headerless N x C score matrix, or the CSV of ``sarb predict`` (an ``image`` column and
    one column per class, in the checkpoint's order)."""
    import csv

    import numpy as np

    from sarb.data.csvio import read_bytes, read_matrix

    text = read_bytes(Path(path), "scores").decode("utf-8", errors="replace")
    if not text.startswith("image,"):
        return read_matrix(path, what="scores")
    rows = list(csv.reader(text.splitlines()))
    try:
        return np.array([[float(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise SarbError(f"{path}: not a predictions CSV of sarb predict ({exc})") from None


def _cmd_metrics(args: argparse.Namespace) -> int:
    import numpy as np

    from sarb.data.csvio import read_matrix
    from sarb.metrics import compute_metrics

    scores = _read_scores(args.scores)
    labels = read_matrix(args.labels, allowed={1, -1, 0}, integer=True, what="labels")
    if scores.shape != labels.shape:
        raise SarbError(
            f"{args.scores}: shape {scores.shape} differs from {args.labels}: {labels.shape}"
        )
    if args.logits:
        scores = np.exp(-np.logaddexp(0.0, -scores))  # the sigmoid, without overflow
    print(json.dumps(compute_metrics(scores, labels, ap=args.ap, threshold=args.threshold)))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from sarb.api import load_model
    from sarb.data.manifest import read_manifest
    from sarb.data.splits import load_splits

    dataset = args.dataset or ("manifest" if args.test else None)
    if args.test and dataset != "manifest":
        raise SarbError("--test FILE needs --dataset manifest")
    if dataset == "manifest" and not args.test:
        raise SarbError("--dataset manifest needs --test FILE (the manifest to evaluate on)")
    if args.test and args.split:
        raise SarbError("--split picks a split of a dataset; with --test the manifest is used")
    predictor = load_model(args.checkpoint, device=args.device)
    # caches go where the user says, never to a folder named inside the checkpoint
    cfg = dataclasses.replace(predictor.config, cache_dir=args.cache_dir)
    names, split = predictor.class_names, args.split or "test"
    if dataset == "manifest":
        data, split = read_manifest(args.test, names), None
    elif dataset == "demo":
        from sarb.data.demo import ensure_demo

        data = read_manifest(ensure_demo(cfg.cache_dir) / f"{split}.csv", names)
    else:  # the dataset and split the checkpoint was trained and selected on
        data = getattr(load_splits(cfg), split)
    metrics = predictor.evaluate(
        data,
        ap=args.ap or cfg.ap,
        threshold=args.threshold,
        batch_size=args.batch_size,
        workers=cfg.workers,
    )
    result = {
        **metrics,
        "checkpoint": str(predictor.checkpoint),
        "data": data.source,
        "split": split,
        "images": len(data),
    }
    if args.format == "json":
        print(json.dumps(result))
    else:
        from sarb.metrics import format_metrics

        print(f"{result['checkpoint']} on {result['data'] or split} ({len(data)} images):")
        print(format_metrics({predictor.config.method: result}))
        aps, chance = result["ap_per_class"], result["chance_ap_per_class"]
        width = max(len(n) for n in names)
        print("\nAP per class (chance: the AP of a random ranking):")
        print(f"  {'':<{width}}     AP  chance")
        for name, ap, base in zip(names, aps, chance, strict=True):
            cells = ["-" if v is None else f"{v:.1f}" for v in (ap, base)]
            print(f"  {name:<{width}}  {cells[0]:>5}  {cells[1]:>5}")
    if args.out:
        atomic_write(args.out, json.dumps(result, indent=2) + "\n", fsync=False)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    from sarb.api import ImagePredictor, find_images, load_model

    if not 0.0 <= args.threshold <= 1.0:
        raise SarbError(f"--threshold must be in [0, 1], got {args.threshold}")
    images, ignored = find_images(args.paths)
    if ignored:
        shown = ", ".join(str(p) for p in ignored[:10])
        more = f", ... ({len(ignored)} in all)" if len(ignored) > 10 else ""
        print(f"sarb: warning: skipped files that are not images: {shown}{more}", file=sys.stderr)
    if not images:
        raise SarbError(f"no image files found in {', '.join(args.paths)}")
    if args.model:
        from sarb.deploy import OnnxPredictor

        predictor: ImagePredictor = OnnxPredictor(args.model)
    else:
        predictor = load_model(args.checkpoint, device=args.device)
    done, scores, unreadable = predictor.predict_paths(images, args.batch_size, progress=True)
    for _, reason in unreadable:
        print(f"sarb: warning: {reason}; skipped", file=sys.stderr)
    if not done:
        raise SarbError(f"none of the {len(images)} image files could be read")
    names = predictor.class_names
    buf = io.StringIO()
    fmt = args.format or ("csv" if str(args.out or "").lower().endswith(".csv") else "jsonl")
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image", *names])
        for path, row in zip(done, scores, strict=True):
            writer.writerow([str(path), *(repr(float(p)) for p in row)])
    else:
        labels = predictor.labels_of(scores, args.threshold)
        for path, row, pos in zip(done, scores, labels, strict=True):
            scored = {n: float(p) for n, p in zip(names, row, strict=True)}
            record = {"image": str(path), "labels": pos, "scores": scored}
            buf.write(json.dumps(record) + "\n")
    if args.out:
        atomic_write(args.out, buf.getvalue(), fsync=False)
        print(f"{args.out}: predictions for {len(done)} images", file=sys.stderr)
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from sarb.deploy import export_onnx

    out = export_onnx(args.checkpoint, args.out)
    print(f"{out}: ONNX model of {args.checkpoint} ({out.stat().st_size / 1e6:.1f} MB)",
          file=sys.stderr)  # fmt: skip
    return 0


def _count(items: Sequence | range, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _cmd_sweep(args: argparse.Namespace) -> int:
    """Run the grid, print the table; exit code 1 when a cell failed."""
    from sarb import report
    from sarb.sweep import FAILURES, plan_from_args, run_sweep

    plan = plan_from_args(args)
    n = len(plan.cells())
    print(
        f"sweep: {_count(plan.methods, 'method')} x {_count(plan.known, 'proportion')} x "
        f"{_count(plan.seeds, 'seed')} = {_count(range(n), 'cell')} into {plan.out}",
        file=sys.stderr,
    )
    outcome = run_sweep(plan)
    sys.stdout.write((plan.out / report.TABLE).read_text())
    elsewhere = f", {len(outcome.elsewhere)} left to another process" if outcome.elsewhere else ""
    print(
        f"sweep: {len(outcome.trained)} trained, {len(outcome.skipped)} skipped (finished "
        f"earlier){elsewhere}, {len(outcome.failed)} failed; {plan.out / report.RESULTS}, "
        f"{report.TABLE}, {report.MAP_FIGURE}, {report.LOSS_FIGURE}",
        file=sys.stderr,
    )
    if mixed := report.mixed_environments(plan.out):
        print(f"sarb: warning: {mixed}", file=sys.stderr)
    if outcome.failed:
        print(
            f"sweep: {len(outcome.failed)} of {n} cells failed, listed in "
            f"{plan.out / FAILURES}; rerun the command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """``report.html`` of a run or a sweep; a sweep's table and figures are first rewritten
    from its results.csv, and the table printed."""
    from sarb.html_report import write_html_report
    from sarb.report import RESULTS, mixed_environments, write_report

    paths = []
    if (Path(args.dir) / RESULTS).is_file():
        paths = write_report(args.dir, args.baseline)
        sys.stdout.write(paths[0].read_text())
        if mixed := mixed_environments(args.dir):
            print(f"sarb: warning: {mixed}", file=sys.stderr)
    paths.append(write_html_report(args.dir))
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from sarb.bench import format_bench, run_bench, write_json

    result = run_bench(args.device, args.quick)
    print(format_bench(result))
    if args.json:
        write_json(result, args.json)
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from sarb.presets import PRESETS, describe

    entries = PRESETS.list()
    w = max(len(e.name) for e in entries)
    r = max(len(e.info["reference"]) for e in entries)
    for e in entries:
        print(f"{e.name:<{w}}  {e.info['reference']:<{r}}  {e.info['summary']}")
        print(f"{'':<{w}}  {describe(e.name)}")
    return 0


def _cmd_labels(args: argparse.Namespace) -> int:
    from sarb.config import resolve_config
    from sarb.data.encodings import write_labels
    from sarb.data.sources import read_dataset

    cfg = resolve_config(args)
    data = getattr(read_dataset(cfg), args.split)
    if data is None:
        raise SarbError(
            f"--dataset {cfg.dataset} has no {args.split} split (training carves one from train)"
        )
    write_labels(args.out, data.labels, args.encoding)
    if args.names:
        atomic_write(args.names, "".join(f"{n}\n" for n in data.class_names), fsync=False)
    print(
        f"{args.out}: {len(data)} x {data.num_classes} labels of {cfg.dataset} {args.split}"
        f" ({args.encoding} encoding)",
        file=sys.stderr,
    )
    return 0


def _cmd_data_download(args: argparse.Namespace) -> int:
    from sarb.data.download import download_dataset

    next_step = download_dataset(
        args.name, args.root, verify=not args.no_verify, delete_archives=args.delete_archives
    )
    print(f"{args.name}: ready in {args.root}; next: {next_step}", file=sys.stderr)
    return 0


def _cmd_data_build_vg200(args: argparse.Namespace) -> int:
    from sarb.data.vg import build_vg200

    build = build_vg200(args.images, args.objects, args.out, args.seed, args.num_classes)
    print(
        f"{build.out}: {len(build.class_names)} classes, {build.num_train} train and"
        f" {build.num_test} test images ({build.num_dropped} without a class left out);"
        f" next: sarb train --dataset vg200 --root {build.out}",
        file=sys.stderr,
    )
    return 0


# The `sarb train` flags that pick and read a dataset, shared by `sarb labels`.
DATASET_FLAGS = ("config", "dataset", "train", "val", "test", "root", "annotations", "images",
                 "test_annotations", "test_images", "voc_difficult", "nuswide_unlabelled",
                 "cache_dir")  # fmt: skip


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The dataset flags of ``sarb train``, taken from add_config_arguments (one definition)."""
    from sarb.config import add_config_arguments

    every = argparse.ArgumentParser(add_help=False)
    add_config_arguments(every)
    for action in every._actions:
        if action.dest in DATASET_FLAGS:
            parser._add_action(action)


def _add_encoding_argument(parser: argparse.ArgumentParser, of: str) -> None:
    """``--encoding``: how a label file writes positive / negative / unknown."""
    from sarb.data.encodings import DEFAULT_ENCODING, ENCODINGS

    parser.add_argument(
        "--encoding",
        choices=tuple(ENCODINGS),
        default=DEFAULT_ENCODING,
        help=f"label values {of}: sarb 1/-1/0 unknown (default), dualcoop 1/0/-1 unknown,"
        " mlcpl 1/0/nan unknown",
    )


def build_parser() -> argparse.ArgumentParser:
    from sarb.config import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="sarb", description="Multi-label image recognition with partial labels (SARB)."
    )
    parser.add_argument("--version", action="version", version=f"sarb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a method; test metrics of the val-selected epoch")
    add_config_arguments(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("demo", help="train on the embedded demo dataset and print a table")
    p.add_argument("--methods", default=",".join(DEMO_METHODS), help="comma-separated methods")
    p.add_argument("--out", default="runs/demo", help="parent of the run directories")
    p.add_argument("--threads", type=int, help="CPU threads (all cores; use 1 on a busy machine)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "masks", help="hide labels as the paper does (docs/method.md#partial-labels)"
    )
    p.add_argument(
        "--labels", required=True, help="FULL.csv: no header, N rows of C positives or negatives"
    )
    p.add_argument(
        "--known", type=float, help="fraction of labels kept, in (0, 1] (not with single-positive)"
    )
    p.add_argument("--out", required=True, help="PARTIAL.csv: same shape, unknowns added")
    _add_encoding_argument(p, "of FULL.csv and PARTIAL.csv")
    p.add_argument("--seed", type=int, default=0, help="0 reproduces the paper's masks")
    p.add_argument(
        "--protocol",
        default="hcp",
        help="hcp (the paper's), per-image, generator, single-positive (one positive per image)",
    )
    p.set_defaults(func=_cmd_masks)

    p = sub.add_parser(
        "metrics", help="mAP and the F1 family (docs/method.md#metrics) of a score matrix"
    )
    p.add_argument("--scores", required=True, help="N x C probabilities, no header")
    p.add_argument("--labels", required=True, help="N x C labels in {1,-1,0}; 0 is ignored")
    p.add_argument("--ap", choices=("voc", "sklearn"), default="voc", help="AP definition")
    p.add_argument("--logits", action="store_true", help="scores are logits: apply a sigmoid")
    p.add_argument("--threshold", type=float, default=0.5, help="probability of a positive")
    p.set_defaults(func=_cmd_metrics)

    p = sub.add_parser("eval", help="metrics of a checkpoint: a table, and JSON with --out")
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run directory (best.pt)")
    p.add_argument(
        "--dataset",
        choices=("demo", "manifest"),
        help="evaluate on this dataset (default: the one the checkpoint was trained on)",
    )
    p.add_argument("--test", help="manifest to evaluate on, with --dataset manifest")
    p.add_argument("--split", choices=("test", "val"), help="split of the dataset (test)")
    p.add_argument(
        "--cache-dir",
        help="where the demo data and parsed annotations are cached (default: $SARB_CACHE_DIR,"
        " else the user cache; never a folder named in the checkpoint)",
    )
    p.add_argument("--ap", choices=("voc", "sklearn"), help="AP definition (the checkpoint's)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability of a positive")
    p.add_argument("--batch-size", type=int, help="images per batch (the checkpoint's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", help="also write the metrics to this JSON file")
    p.add_argument(
        "--format", choices=("table", "json"), default="table", help="what to print (table)"
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="class probabilities of images, one record per image")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a .pt file or a run directory (best.pt)")
    model.add_argument("--model", help="an ONNX file of sarb export, run by ONNX Runtime (CPU)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability of a listed label")
    p.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        help="output format (default: from the --out extension, .csv or .jsonl; else jsonl)",
    )
    p.add_argument("--out", help="write the records to this file instead of stdout")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="a checkpoint's inference graph as an ONNX file")
    p.add_argument("--checkpoint", required=True, help="a .pt file or a run directory (best.pt)")
    p.add_argument("--out", required=True, help="the ONNX file to write (model.onnx)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "sweep", help="methods x known proportions x seeds: results.csv, table, figures",
        conflict_handler="resolve",  # the grid flags replace --method/--known/--out of train
    )  # fmt: skip
    add_config_arguments(p)  # every `sarb train` flag; the grid flags below replace four
    p.add_argument(
        "--config",
        help="YAML file (or packaged config name: quick, demo, glyphs, paper, sweep_paper); may"
        " hold a 'sweep:' section (methods, known, seeds)",
    )
    p.add_argument("--methods", "--method", dest="methods",
                   help="comma-separated methods, or 'all' (see `sarb methods`)")  # fmt: skip
    p.add_argument(
        "--known",
        help="comma-separated known-label fractions, and/or single-positive (default: the"
        " paper's 0.1,...,0.9)",
    )
    p.add_argument(
        "--seeds",
        help="N: seeds 0..N-1 (default 1); A-B or A,B,...: those seeds (a sweep split over"
        " processes or machines by seeds, into one --out)",
    )
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # rejected: use --seeds
    p.add_argument("--out", required=True, metavar="DIR",
                   help="sweep directory: runs/, results.csv, table.md, figures")  # fmt: skip
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "report", help="DIR/report.html, one offline page about a run or a sweep (and a sweep's"
        " table.md and figures, rebuilt from results.csv)",
    )  # fmt: skip
    p.add_argument("dir", metavar="DIR", help="a run directory, or a sweep directory")
    p.add_argument("--baseline", metavar="METHOD",
                   help="the method a sweep's paired differences are taken to (default: ssgrl if"
                   " the sweep has it, else its first method)")  # fmt: skip
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("bench", help="speed and memory ratios, measured side by side")
    p.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes on a CPU")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("labels", help="the complete label matrix of a dataset split, as CSV")
    _add_dataset_arguments(p)
    p.add_argument(
        "--split", choices=("train", "val", "test"), default="train", help="split to write (train)"
    )
    p.add_argument("--out", required=True, help="LABELS.csv: no header, rows in dataset order")
    p.add_argument("--names", help="also write the class names here, one per line")
    _add_encoding_argument(p, "of LABELS.csv")
    p.set_defaults(func=_cmd_labels)

    p = sub.add_parser("data", help="download the paper's datasets; build VG-200")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    d = data_sub.add_parser("download", help="fetch and extract the official archives")
    d.add_argument(
        "name",
        choices=("coco2014", "voc2007", "vg", "nuswide"),
        help="dataset (nuswide: says what to fetch by hand, and checks it)",
    )
    d.add_argument("--root", required=True, help="folder to download and extract into")
    d.add_argument("--no-verify", action="store_true", help="skip the MD5 checks")
    d.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    d.set_defaults(func=_cmd_data_download)
    d = data_sub.add_parser("build-vg200", help="VG-200 split files from Visual Genome")
    d.add_argument("--images", required=True, help="VG_IMAGES: holds VG_100K/ and VG_100K_2/")
    d.add_argument("--objects", required=True, help="objects.json of Visual Genome")
    d.add_argument("--out", required=True, help="folder for the files (--dataset vg200 --root)")
    d.add_argument("--seed", type=int, default=0, help="seed of the test split (0)")
    d.add_argument("--num-classes", type=int, default=200, help="most frequent categories (200)")
    d.set_defaults(func=_cmd_data_build_vg200)

    p = sub.add_parser("methods", help="list the registered methods with their references")
    p.set_defaults(func=_cmd_methods)
    return parser


def _one_line(exc: SarbError) -> str:
    """The user's message, also when a DataLoader worker re-raised it wrapped in a traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split("SarbError: ", 1)[-1]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sarb`` and ``python -m sarb``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SarbError as exc:
        print(f"sarb: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sarb: interrupted", file=sys.stderr)
        return 130
    finally:
        # under torchrun: leave the process group before exit; a gloo group left to the
        # interpreter's teardown can abort a rank after a finished run (seen: exit code -6)
        from sarb import distributed

        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
