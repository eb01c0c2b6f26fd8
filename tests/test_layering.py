"""The import graph of TIDE's packages: no cycle (function-level imports included), the torch boundary, and the
application above the models (nothing in ``cost_models/`` or ``workloads/`` reaches into ``dse/``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dse", "cost_models", "workloads")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (for annotations only: never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for inner in node.body:
                lines.update(n.lineno for n in ast.walk(inner) if isinstance(n, ast.Import | ast.ImportFrom))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its code (module level or inside functions)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(graph()) == []


def test_the_models_never_import_the_application() -> None:
    bad = {m: sorted(t for t in ts if t.startswith("dse")) for m, ts in graph().items()
           if not m.startswith("dse") and any(t.startswith("dse") for t in ts)}
    assert bad == {}


def test_nothing_below_the_cli_imports_a_cli_or_the_report() -> None:
    """The command-line modules (and the HTML report) sit on top: library modules do not import them."""
    g = graph()
    top = {m for m in g if m in ("dse.app", "dse.cli", "dse.__main__", "dse.accuracy", "dse.evaluate", "dse.dashboard",
                                 "dse.fidelity", "dse.calibrate") or m.startswith(("dse.report", "dse.studies"))
           or m.endswith(".__main__")}
    bad = {m: sorted(ts & top) for m, ts in g.items() if m not in top and ts & top}
    assert bad == {}


def test_the_cost_side_and_the_accuracy_seam_import_no_torch() -> None:
    """Importing the application's accuracy side (oracle, coupling, the loop) and every cost model loads no torch:
    the session imports it when an oracle is built."""
    code = ("import sys, pkgutil, importlib, cost_models\n"
            "import dse.oracle, dse.coupling, dse.study, dse.storage, dse.results, dse.checks, dse.exhaustive\n"
            "import workloads.accuracy.specs\n"
            "for m in pkgutil.iter_modules(cost_models.__path__): importlib.import_module(f'cost_models.{m.name}')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
