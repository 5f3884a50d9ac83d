"""Run every shell command and Python example of README.md, as written, in a fresh clone.

The examples are taken from the README's fenced code blocks (``bash``/``sh``/``shell``/
``console``: one example per command, a multi-line loop being one command; ``python``: one
per block; other blocks are file contents and are listed, not run) and run in README order,
in a fresh clone of this repository, so ``make demo`` (the quick start's) runs before the
examples that use what it writes (``runs/demo/...``). A variable assignment (``L=a,b``) in a
block applies to the block's later commands. Skipped, with the reason printed: the clone
itself, installs (the clone uses this checkout's installed ``.venv``), commands that need a
GPU, ``torchrun`` or the paper's datasets (COCO, VOC, VG, NUS-WIDE), placeholders (``...``),
and commands that read what a skipped command writes. Exits 1 if an example fails.

    python scripts/readme_commands.py --list           # the plan: what runs, what is skipped
    OMP_NUM_THREADS=1 python scripts/readme_commands.py --workdir /tmp/readme
    python scripts/readme_commands.py --skip-long      # not the multi-run reproductions
    python scripts/readme_commands.py --only 'make demo|sweep'   # some examples only
    python scripts/readme_commands.py --workdir /tmp/readme --reuse --only predict  # again

``--source worktree`` copies this working tree (tracked and untracked files that git does not
ignore) instead of cloning the committed HEAD.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHELL = ("bash", "sh", "shell", "console", "zsh")
PYTHON = ("python", "py", "python3")

# (pattern, reason): the first that matches a command skips it.
SKIP_RULES: list[tuple[str, str]] = [
    (r"^git clone\b", "the clone itself: this script runs in a fresh clone"),
    (r"\b(pip|uv pip|make) install\b", "an install: the clone uses this checkout's .venv"),
    (r"\btorchrun\b", "torchrun: several processes, GPUs or machines"),
    (r"\bsarb data (download|build-)", "a paper dataset: download or build"),
    (r"--dataset[ =](coco|voc|vg|nus)", "a paper dataset"),
    (r"--config[ =](configs/)?paper_", "a paper dataset (its paper config)"),
    (r"--root[ =]data/", "a paper dataset"),
    (
        r"--config[ =](configs/)?paper(\.yaml)?(\s|$)",
        "the paper's recipe (ResNet-101 at 448 px): a GPU",
    ),
    (r"\bcuda\b|gpu_check", "needs a GPU"),
    (r"(^|\s)\.\.\.(\s|$)", "a placeholder (...)"),
]
DEPENDS = "reads {}, which a skipped command writes"
LONG = "a reproduction of many training runs (--skip-long)"
_LONG_PATTERN = r"(^|\n)\s*for\b[\s\S]*\bsarb (train|sweep)\b|\bsarb sweep\b"
_OUTPUT_FLAGS = ("--out", "--root", "--names", "--json", ">", ">>")


@dataclass
class Example:
    """One command or Python block of the README."""

    line: int  # of its first line in the README
    kind: str  # "shell", "python" or "data" (a file's contents, never run)
    text: str  # as written (continuation lines kept)
    prelude: str = ""  # the block's variable assignments before it (shell)
    skip: str | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def one_line(self) -> str:
        """The example on one line, for listings."""
        return " ".join(self.text.replace("\\\n", " ").split())


def _tokens(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: good enough for counting keywords
        return line.split("#")[0].split()


def _depth_change(line: str) -> int:
    words = [t.rstrip(";") for t in _tokens(line)]
    opened = sum(w in ("do", "then") for w in words) + words.count("case")
    closed = sum(w in ("done", "fi") for w in words) + words.count("esac")
    return opened - closed


def _shell_examples(lines: list[str], first: int, console: bool) -> list[Example]:
    """The commands of a shell block whose first line is README line ``first``."""
    if console:  # only the prompt lines are commands
        lines = [ln[2:] if ln.startswith("$ ") else "" for ln in lines]
    logical: list[tuple[int, str]] = []  # (line number, text with its continuations)
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        logical.append((first + start, text))
        i += 1
    out: list[Example] = []
    prelude: list[str] = []
    pending: list[tuple[int, str]] = []
    depth = 0
    for number, text in logical:
        if not pending and not _tokens(text):  # blank or comment only
            continue
        pending.append((number, text))
        depth += _depth_change(text)
        if depth > 0:
            continue
        body = "\n".join(t for _, t in pending)
        if re.fullmatch(r"[A-Za-z_]\w*=\S*", body.strip()):
            prelude.append(body.strip())
        else:
            out.append(Example(pending[0][0], "shell", body, "\n".join(prelude)))
        pending, depth = [], 0
    if pending:  # an unclosed loop: run it as written, the shell reports it
        out.append(Example(pending[0][0], "shell", "\n".join(t for _, t in pending)))
    return out


def extract(text: str) -> list[Example]:
    """Every example of a README's fenced code blocks, in order."""
    lines = text.splitlines()
    out: list[Example] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = lines[i + 1 : j]
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = [ln[indent:] if ln[:indent].isspace() else ln for ln in body]
        if lang in SHELL:
            out.extend(_shell_examples(body, i + 2, console=lang == "console"))
        elif lang in PYTHON:
            out.append(Example(i + 2, "python", "\n".join(body)))
        else:
            out.append(Example(i + 2, "data", "\n".join(body), skip=f"{lang or 'text'} block"))
        i = j + 1
    return out


def _outputs(example: Example) -> list[str]:
    """The paths a command writes (values of --out, --root, ...)."""
    words = _tokens(example.text.replace("\\\n", " "))
    return [b for a, b in zip(words, words[1:], strict=False) if a in _OUTPUT_FLAGS]


def plan(text: str, skip_long: bool = False) -> list[Example]:
    """The README's examples with the reason each skipped one is skipped."""
    examples = extract(text)
    unavailable: list[str] = []
    for ex in examples:
        if ex.kind == "data":
            continue
        ex.outputs = _outputs(ex) if ex.kind == "shell" else []
        for pattern, reason in SKIP_RULES:
            if re.search(pattern, ex.text, re.M):
                ex.skip = reason
                break
        if ex.skip is None:
            words = set(_tokens(ex.text.replace("\\\n", " ")))
            needed = [p for p in unavailable if p in words and p not in ex.outputs]
            if needed:
                ex.skip = DEPENDS.format(", ".join(needed))
        if ex.skip is None and skip_long and re.search(_LONG_PATTERN, ex.text):
            ex.skip = LONG
        if ex.skip is not None:
            unavailable.extend(ex.outputs)
    return examples


def prepare(dest: Path, source: str) -> Path:
    """A fresh copy of this repository at ``dest`` that uses this checkout's installed
    ``.venv`` (linked; ``make`` sees it installed, so it never reinstalls)."""
    stamp = ROOT / ".venv" / ".installed"
    if not stamp.is_file():
        raise SystemExit(f"{stamp} is missing: run `make install` first")
    if source == "clone":
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    else:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout.decode()
        for rel in filter(None, listed.split("\0")):
            if (ROOT / rel).is_file():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    keep_installed(dest)
    return dest


def keep_installed(clone: Path) -> None:
    """Date the clone's pyproject.toml before the install stamp, so ``make`` never reinstalls
    into the linked ``.venv``."""
    older = (ROOT / ".venv" / ".installed").stat().st_mtime - 1
    os.utime(clone / "pyproject.toml", (older, older))


def environment(clone: Path, cache_dir: str | None) -> dict[str, str]:
    """The environment of an activated ``.venv`` whose ``sarb`` is the clone's code."""
    env = dict(os.environ)
    venv = clone / ".venv"
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(clone / "src"), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if cache_dir:
        env["SARB_CACHE_DIR"] = cache_dir
    return env


def run_example(
    example: Example, cwd: Path, env: dict[str, str], log: Path, timeout: float | None = None
) -> tuple[bool, float]:
    """Run one example in ``cwd``, its output into ``log``; (passed, seconds)."""
    if example.kind == "python":
        command = [str(cwd / ".venv" / "bin" / "python"), "-"]
        stdin = example.text
    else:
        command = ["bash", "-c", f"set -eo pipefail\n{example.prelude}\n{example.text}"]
        stdin = None
    start = time.perf_counter()
    with open(log, "w") as out:
        out.write(f"$ {example.one_line}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a timeout stops the example's own processes only
        )
        try:
            proc.communicate(stdin, timeout=timeout)
            passed = proc.returncode == 0
            if not passed:
                out.write(f"\nexit status {proc.returncode}\n")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.write(f"\ntimed out after {timeout} s\n")
            passed = False
    return passed, time.perf_counter() - start


def _short(text: str, width: int = 96) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def print_plan(examples: list[Example], readme: str) -> None:
    """What runs and what is skipped, with the reasons."""
    runs = [e for e in examples if e.kind != "data" and e.skip is None]
    print(f"{readme}: {len(runs)} examples to run:")
    for ex in runs:
        print(f"  {readme}:{ex.line:<5} {ex.kind:6} {_short(ex.one_line)}")
    skipped = [e for e in examples if e.kind != "data" and e.skip is not None]
    print(f"skipped ({len(skipped)}):")
    for ex in skipped:
        print(f"  {readme}:{ex.line:<5} {_short(ex.one_line, 70)}\n      -> {ex.skip}")
    data = [e for e in examples if e.kind == "data"]
    print(f"not commands ({len(data)}): " + ", ".join(f"{e.skip} at line {e.line}" for e in data))


def main(argv: list[str] | None = None) -> int:
    """Run the README's examples; 0 if every one that is not skipped passes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--workdir", help="where the clone and logs go (default: a new temp dir)")
    parser.add_argument("--source", choices=("clone", "worktree"), default="clone")
    parser.add_argument("--cache-dir", help="SARB_CACHE_DIR for the examples (default: as set)")
    parser.add_argument("--skip-long", action="store_true", help="not the multi-run loops")
    parser.add_argument("--timeout", type=float, help="seconds per example")
    parser.add_argument(
        "--reuse", action="store_true", help="the --workdir's clone and runs, updated by git pull"
    )
    parser.add_argument(
        "--only", metavar="REGEX", help="run only the examples that match (e.g. 'make demo|sweep')"
    )
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.list:
        print_plan(plan(Path(args.readme).read_text(), args.skip_long), "README.md")
        return 0
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sarb-readme-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    clone = work / "sarb"
    if args.reuse and (clone / ".git").is_dir():  # its runs are kept; newer commits pulled
        subprocess.run(["git", "pull", "--quiet", "--ff-only"], cwd=clone, check=True)
        keep_installed(clone)
    else:
        prepare(clone, args.source)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    examples = plan((clone / "README.md").read_text(), args.skip_long)  # the clone's README
    print_plan(examples, "README.md")
    env = environment(clone, args.cache_dir)
    runs = [e for e in examples if e.kind != "data" and e.skip is None]
    if args.only:
        runs = [e for e in runs if re.search(args.only, e.text)]
    print(f"\nrunning in {clone} (logs: {logs})", flush=True)
    failed: list[tuple[Example, Path]] = []
    for n, ex in enumerate(runs, 1):
        log = logs / f"{n:02d}-line{ex.line}.log"
        passed, seconds = run_example(ex, clone, env, log, args.timeout)
        status = "ok  " if passed else "FAIL"
        print(f"[{n:2d}/{len(runs)}] {status} {seconds:7.1f}s  README.md:{ex.line:<5} "
              f"{_short(ex.one_line, 70)}", flush=True)  # fmt: skip
        if not passed:
            failed.append((ex, log))
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(f"      | {t}" for t in tail), flush=True)
    skipped = sum(e.kind != "data" and e.skip is not None for e in examples)
    unselected = sum(e.kind != "data" and e.skip is None for e in examples) - len(runs)
    print(f"\n{len(runs)} ran, {len(runs) - len(failed)} passed, {len(failed)} failed;"
          f" {skipped} skipped (listed above)"
          + (f"; {unselected} not selected by --only" if unselected else ""))  # fmt: skip
    for ex, log in failed:
        print(f"  failed: README.md:{ex.line} {_short(ex.one_line, 70)} (log: {log})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
