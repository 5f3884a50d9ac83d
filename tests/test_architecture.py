"""The package's shape: layers that point one way, no import circle, a short engine."""

from __future__ import annotations

import ast
from pathlib import Path

import sarb

SRC = Path(sarb.__file__).parent

# Bottom to top. A module may import modules of a lower layer, and of its own layer only inside
# its own package (sarb.data.*, sarb.models.*, sarb.methods.*) or in the FLAT layers (the
# foundations, the tools, the entry points), whose modules may use each other (without a circle).
LAYERS = [
    {"sarb", "sarb.errors", "sarb.registry", "sarb.files", "sarb.distributed", "sarb.published",
     "sarb.presets", "sarb.runtime"},
    {"sarb.data", "sarb.losses", "sarb.metrics", "sarb.checkpoint"},
    {"sarb.config", "sarb.models"},
    {"sarb.methods"},
    {"sarb.runs", "sarb.summary"},
    {"sarb.engine"},
    {"sarb.api", "sarb.sweep", "sarb.report", "sarb.html_report", "sarb.bench", "sarb.deploy"},
    {"sarb.cli", "sarb.__main__"},
]  # fmt: skip
FLAT = {0, 4, 6, 7}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every sarb module that ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("sarb")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sarb"):
            for a in node.names:  # "from sarb.data import demo" imports the module sarb.data.demo
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def _layer(module: str) -> tuple[int, str]:
    """(layer index, the layer entry that holds ``module``)."""
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if module == entry or module.startswith(entry + "."):
                if best is None or len(entry) > len(best[1]):
                    best = (i, entry)
    assert best is not None, f"{module} is in no layer of this test: place it"
    return best


def test_every_import_points_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        here, home = _layer(name)
        for target in _imports(path, modules):
            there, entry = _layer(target)
            same_package = home == entry and home != "sarb"
            if there > here or (there == here and not same_package and here not in FLAT):
                wrong.append(f"{name} (layer {here}) imports {target} (layer {there})")
    assert not wrong, "\n".join(wrong)


def test_lower_layers_import_nothing_from_methods_engine_cli_or_api() -> None:
    modules = _modules()
    upper = ("sarb.methods", "sarb.engine", "sarb.cli", "sarb.api", "sarb.sweep", "sarb.runs")
    for name, path in modules.items():
        if name.startswith(("sarb.models", "sarb.data")) or name in ("sarb.losses", "sarb.metrics"):
            bad = [t for t in _imports(path, modules) if t.startswith(upper)]
            assert not bad, f"{name} imports {bad}"


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path) -> None:
    """The checks above can fail: a function-level import is an import too."""
    code = "def f():\n    from sarb.engine import fit\n"
    path = tmp_path / "m.py"
    path.write_text(code)
    assert _imports(path, _modules()) == {"sarb.engine"}
    assert _layer("sarb.models.heads")[0] < _layer("sarb.engine")[0]


def test_engine_is_short() -> None:
    assert len((SRC / "engine.py").read_text().splitlines()) <= 350
