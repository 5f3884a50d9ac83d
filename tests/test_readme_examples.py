"""scripts/readme_commands.py, which runs the README's examples after `make demo`: what it
extracts and skips, that every path an example reads exists in the repository or is written by
`make demo` or an earlier example, and a few of the examples, verbatim, on a tiny demo."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sarb.cli import DEMO_METHODS, main
from sarb.data.demo import build_demo
from sarb.data.example import EXAMPLE_FILES, write_example

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "readme_commands", ROOT / "scripts/readme_commands.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rc = _script()
README = (ROOT / "README.md").read_text()
EXAMPLES = rc.plan(README)
RUN = [e for e in EXAMPLES if e.kind != "data" and e.skip is None]
SKIPPED = [e for e in EXAMPLES if e.kind != "data" and e.skip is not None]


def test_extraction_of_blocks_loops_continuations_and_variables() -> None:
    text = "\n".join([
        "intro", "```bash", "# a comment", "sarb masks --labels a.csv \\", "    --out b.csv",
        "L=x,y", "for m in 1 2; do", "  sarb train --out runs/$m", "done", "echo $L", "```",
        "```python", "print(1)", "```", "```csv", "image,cat", "```",
        "```console", "$ sarb methods", "output line", "```",
    ])  # fmt: skip
    examples = rc.extract(text)
    assert [(e.kind, e.line) for e in examples] == [
        ("shell", 4), ("shell", 7), ("shell", 10), ("python", 13), ("data", 16), ("shell", 19)
    ]  # fmt: skip
    assert examples[0].one_line == "sarb masks --labels a.csv --out b.csv"
    assert examples[1].text.endswith("done") and examples[2].prelude == "L=x,y"
    assert examples[5].text == "sarb methods"


def test_skips_the_gpu_torchrun_paper_data_and_what_depends_on_them() -> None:
    text = "\n".join([
        "```bash", "sarb labels --dataset voc2007 --root data/voc --out voc.csv",
        "sarb masks --labels voc.csv --known 0.1 --out voc10.csv", "sarb masks --labels voc10.csv",
        "torchrun --nproc_per_node 2 -m sarb train", "sarb train --config configs/paper.yaml",
        "sarb train --config demo", "sarb sweep --config quick --out runs/s", "```",
    ])  # fmt: skip
    assert [e.skip for e in rc.plan(text)] == [
        "a paper dataset",
        rc.DEPENDS.format("voc.csv"),
        rc.DEPENDS.format("voc10.csv"),
        "torchrun: several processes, GPUs or machines",
        "the paper's recipe (ResNet-101 at 448 px): a GPU",
        None,
        None,
    ]
    assert rc.plan(text, skip_long=True)[-1].skip == rc.LONG


def test_the_readme_plan_runs_make_demo_first_and_lists_each_skip(capsys) -> None:
    assert len(RUN) >= 8 and any(e.kind == "python" for e in RUN)
    demo = next(i for i, e in enumerate(RUN) if e.one_line.startswith("make demo"))
    assert all("runs/demo" not in e.text for e in RUN[:demo])
    allowed = {reason for _, reason in rc.SKIP_RULES}
    for e in SKIPPED:  # only the GPU, torchrun, paper data, installs, the clone, placeholders
        assert e.skip in allowed or e.skip.startswith("reads "), e.skip
    assert any("torchrun" in e.text for e in SKIPPED)
    assert any("paper dataset" in e.skip for e in SKIPPED)
    assert rc.main(["--list"]) == 0
    out = capsys.readouterr().out
    for e in SKIPPED:
        assert f"README.md:{e.line} " in out and e.skip in out


def _demo_paths() -> set[str]:
    """What `make demo` writes that an example may read."""
    runs = {f"runs/demo/{m}" for m in DEMO_METHODS}
    return runs | {f"runs/demo/example/{name}" for name in EXAMPLE_FILES}


def _outputs(example) -> set[str]:
    """What an example writes: its --out (and such) values, a Python block's "out" paths."""
    if example.kind == "python":
        return set(re.findall(r"\"out\": \"([^\"]+)\"", example.text))
    return set(example.outputs)


def _paths_read(example) -> list[str]:
    """The path-like words of an example (arguments or Python strings with a slash or a file
    extension), except its outputs."""
    if example.kind == "python":
        words = re.findall(r"\"([^\"\s]+)\"", example.text)
    else:
        words = shlex.split(example.text.replace("\\\n", " "), comments=True)
    return [
        w
        for w in words
        if not w.startswith(("-", "http")) and not re.search(r"[$<>*{]", w)
        and w not in _outputs(example) and ("/" in w or re.search(r"\.[A-Za-z]\w{0,5}$", w))
    ]  # fmt: skip


def _within(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def test_every_path_a_readme_example_reads_exists_after_make_demo() -> None:
    made = _demo_paths()  # and, in README order, what the examples before write
    for e in RUN:
        for path in _paths_read(e):
            exists = (ROOT / path).exists() or _within(path, made)
            assert exists, f"README.md:{e.line}: {path} is neither in the repository nor made"
        made |= _outputs(e)


@pytest.fixture(scope="module")
def tiny_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as a clone after `make demo`, made small: the example from a tiny demo
    dataset and, as runs/demo/sarb, a few steps of a tiny model on it."""
    tmp = tmp_path_factory.mktemp("readme")
    clone = tmp / "sarb"
    (clone / ".venv").mkdir(parents=True)
    (clone / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    (clone / "configs").symlink_to(ROOT / "configs")
    demo = build_demo(tmp / "demo", sizes={"train": 40, "val": 10, "test": 20})
    example = write_example(demo, clone / "runs/demo/example", {"train": 32, "val": 8, "test": 8})
    assert sorted(p.name for p in example.iterdir()) == sorted(EXAMPLE_FILES)
    assert (example / "photos" / "001.jpg").is_file()
    argv = ["train", "--dataset", "manifest", "--train", str(example / "train.csv"),
            "--test", str(example / "test.csv"), "--backbone", "cnn3", "--weights", "random",
            "--image-size", "32", "--feat-dim", "16", "--embeddings", "learned", "--epochs", "1",
            "--batch-size", "16", "--workers", "0", "--threads", "1",
            "--out", str(clone / "runs/demo/sarb")]  # fmt: skip
    assert main(argv) == 0
    return clone


def test_own_data_and_predict_examples_run_verbatim_on_a_tiny_demo(tiny_clone: Path) -> None:
    # the own-data, predict and eval examples that read only what `make demo` writes
    chosen = [
        e
        for e in RUN
        if re.search(r"sarb (predict|eval)\b|--dataset manifest", e.text)
        and all((ROOT / p).exists() or _within(p, _demo_paths()) for p in _paths_read(e))
    ]
    assert len(chosen) >= 2
    env = rc.environment(tiny_clone, str(tiny_clone.parent / "cache"))
    env["PYTHONPATH"] = str(ROOT / "src")
    for n, e in enumerate(chosen):
        log = tiny_clone.parent / f"{n}.log"
        passed, _ = rc.run_example(e, tiny_clone, env, log, timeout=120)
        assert passed, log.read_text()
