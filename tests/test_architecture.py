"""The package layout as a test: an AST scan of every import (lazy ones and ``TYPE_CHECKING``
ones included) finds no import cycle and no import from a higher layer; no folder holds more
than a handful of modules and no module is overlong.  The layers are described in
``docs/architecture.md``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("replay", "calibration", "strategies", "hydra_plugins")

#: (prefix, rank): a module imports only from its own group or from groups of lower rank.
LAYERS = (
    ("calibration", 0),
    ("replay.errors", 1), ("replay.units", 1),
    ("replay.model", 2),
    ("replay.store", 3),
    ("replay.ingest", 4), ("replay.synth", 4),
    ("replay.engine", 5),
    ("replay.venue", 6),
    ("replay.consumers", 7),
    ("strategies", 8),
    ("replay.analytics", 9),
    ("replay.app", 10),
    ("hydra_plugins", 11), ("replay", 11),  # the package face and __main__, lazily
)
MAX_MODULES_PER_FOLDER = 9
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


MODULES = _modules()


def _target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every project module ``module`` imports, anywhere in its body.  ``from pkg import x``
    counts as importing ``pkg.x`` when that is a module, else ``pkg`` itself."""
    path = MODULES[module]
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(t for a in node.names if (t := _target(a.name)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for a in node.names:
                full = f"{base}.{a.name}"
                t = full if full in MODULES else _target(base)
                if t:
                    out.add(t)
    out.discard(module)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def layer(module: str) -> tuple[str, int]:
    prefix, rank = max(((p, r) for p, r in LAYERS if module == p or module.startswith(p + ".")),
                       key=lambda pr: len(pr[0]))
    return prefix, rank


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                on.discard(w)
                comp.append(w)
            on.discard(v)
            if comp:
                cycles.append(sorted([v, *comp]))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert cycles == []


def test_imports_point_down_the_layers():
    upward = []
    for m, targets in GRAPH.items():
        group, rank = layer(m)
        for t in targets:
            tgroup, trank = layer(t)
            if tgroup != group and trank >= rank:
                upward.append(f"{m} -> {t}")
    assert upward == []


def test_calibration_imports_nothing_of_replay_or_strategies():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if m.startswith("calibration")
                 for t in ts if not t.startswith("calibration"))
    assert bad == []


def test_the_scan_sees_lazy_imports():
    """The scan must not be vacuous: a lazy import inside a function is an edge."""
    assert "replay.app.backtest" in GRAPH["replay"]


@pytest.mark.parametrize("folder", sorted({p.parent for p in MODULES.values()}),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_folders_hold_few_modules(folder: Path):
    mods = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(mods) <= MAX_MODULES_PER_FOLDER, sorted(p.name for p in mods)


def test_no_module_is_overlong():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
