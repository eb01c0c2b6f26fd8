"""``tide``: one command with a subcommand per tool. Each subcommand is the existing module's command line (its own
options and Hydra overrides, its own ``--help``); the ``python -m`` forms stay.

    tide search [OVERRIDES]                     python -m dse
    tide evaluate DESIGN.yaml [--breakdown]     python -m dse.evaluate
    tide report RUN_DIR... [--out FILE]         python -m dse.report
    tide dashboard RUN_DIR                      python -m dse.dashboard
    tide accuracy [OVERRIDES]                   python -m dse.accuracy
    tide fidelity tender|infinigen --out DIR    python -m dse.fidelity
    tide robust RUN_DIR [--draws N]             python -m dse.robust
    tide calibrate tender|infinigen [--write]   python -m dse.calibrate
    tide studies NAME [ARGS]                    python -m dse.studies.NAME
    tide bench NAME [ARGS]                      python benchmarks/bench_NAME.py

Exit status: the subcommand's; 2 for an unknown subcommand, study or benchmark (the message lists the choices).
"""

from __future__ import annotations

import importlib
import pkgutil
import runpy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDIES_DIR = Path(__file__).resolve().parent / "studies"
BENCH_DIR = ROOT / "benchmarks"


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main`` it runs and what it does (one line, for ``tide --help``)."""

    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "search": Command("dse.__main__", "run a Hydra-configured design-space search (the default: Tender, coupled)"),
    "evaluate": Command("dse.evaluate", "re-evaluate an exported design file, with its per-operator breakdown"),
    "report": Command("dse.report.__main__", "write the interactive HTML report of one or more runs"),
    "dashboard": Command("dse.dashboard", "watch a run's study in optuna-dashboard"),
    "accuracy": Command("dse.accuracy", "measure one quant.* / kv.* configuration on the proxy model"),
    "fidelity": Command("dse.studies.fidelity", "the cost models against the papers' published ratios"),
    "robust": Command("dse.robust.__main__", "which designs stay Pareto-optimal when every stated range is drawn"),
    "calibrate": Command("dse.studies.calibrate", "fit the calibrated mechanism parameters"),
}
GROUPS = {"studies": "run a study of dse/studies/ (tide studies --help lists them)",
          "bench": "run a benchmark of benchmarks/ (tide bench --help lists them)"}


def studies() -> dict[str, str]:
    """The studies (modules of ``dse/studies/`` with a command line), by name, with their first docstring line."""
    out = {}
    for m in pkgutil.iter_modules([str(STUDIES_DIR)]):
        text = (STUDIES_DIR / f"{m.name}.py").read_text()
        if not m.name.startswith("_") and "\ndef main(" in text:
            out[m.name] = _summary(text)
    return out


def benchmarks() -> dict[str, str]:
    """The benchmarks (``benchmarks/bench_NAME.py``), by NAME, with their first docstring line."""
    return {p.stem.removeprefix("bench_"): _summary(p.read_text()) for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def _summary(text: str) -> str:
    import ast

    doc = (ast.get_docstring(ast.parse(text)) or "").strip()
    first = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, on one line
    if first.startswith("``") and "``: " in first:  # the usage aside
        first = first.split("``: ", 1)[1]
    return first.split(". ")[0].rstrip(".")


def usage() -> str:
    rows = [(name, c.summary) for name, c in COMMANDS.items()] + list(GROUPS.items())
    width = max(len(n) for n, _ in rows)
    lines = ["usage: tide COMMAND [ARGS]   (tide COMMAND --help: the command's own options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    return "\n".join(lines)


def _listing(kind: str, entries: dict[str, str]) -> str:
    width = max(len(n) for n in entries)
    return "\n".join([f"usage: tide {kind} NAME [ARGS]", "", f"{kind}:",
                      *(f"  {n:<{width}}  {text}" for n, text in entries.items())])


def _run_main(module: str, prog: str, args: Sequence[str]) -> int:
    """``module.main()`` with ``sys.argv`` as the module's own command line would have it."""
    main: Callable[[], int | None] = importlib.import_module(module).main
    sys.argv = [prog, *args]
    code = main()
    return int(code or 0)


def _group(kind: str, entries: dict[str, str], args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(_listing(kind, entries))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in entries:
        print(f"tide {kind}: unknown {kind[:-1] if kind == 'bench' else 'study'} {name!r}; choices: {sorted(entries)}",
              file=sys.stderr)
        return 2
    if kind == "studies":
        return _run_main(f"dse.studies.{name}", f"tide studies {name}", rest)
    path = BENCH_DIR / f"bench_{name}.py"
    sys.argv = [str(path), *rest]
    sys.path.insert(0, str(BENCH_DIR))  # a benchmark imports its neighbours (benchmarks/_timing.py)
    runpy.run_path(str(path), run_name="__main__")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "studies":
        return _group("studies", studies(), rest)
    if command == "bench":
        return _group("bench", benchmarks(), rest)
    if command not in COMMANDS:
        print(f"tide: unknown command {command!r}; choices: {sorted([*COMMANDS, *GROUPS])}\n\n{usage()}",
              file=sys.stderr)
        return 2
    return _run_main(COMMANDS[command].module, f"tide {command}", rest)


def entry() -> None:
    """The console script."""
    sys.exit(main())
