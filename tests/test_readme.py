"""Every `sarb` command in the README's shell examples is a valid command line of today's CLI:
it parses, and a training or sweep command resolves to a valid configuration (no stale flag,
no unknown method or value). Running them needs the demo or the paper's data; this checks
that they would start."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sarb.cli import build_parser
from sarb.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
VARIABLES = {"$m": "sarb", "$p": "0.1", "$known": "0.1", "$seed": "0", "$L": "sarb,ssgrl"}


def readme_commands() -> list[str]:
    """The `sarb ...` lines of the README's ```bash blocks (continuations joined, comments and
    optional ``[...]`` parts dropped, shell variables given example values)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#")[0]).strip()
            if line.startswith("sarb "):
                for name, value in VARIABLES.items():
                    line = line.replace(name, value)
                out.append(line)
    return out


def test_the_readme_has_commands() -> None:
    assert len(readme_commands()) >= 10


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_is_valid(command: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    args = build_parser().parse_args(shlex.split(command)[1:])  # SystemExit on a bad flag
    if args.command == "train":
        resolve_config(args)
    elif args.command == "sweep":
        from sarb.sweep import plan_from_args

        plan_from_args(args)
