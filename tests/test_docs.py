"""The README's and docs/' commands: every line of every ``bash`` block is parsed by the command it names (the Hydra
apps compose, validate and build their system from the overrides; the argparse commands parse their arguments with
their own parser; make targets, scripts, test files and pinned packages exist), and every relative link resolves."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from dse import cli
from dse.checks import check_search
from dse.config import CONF_DIR, compose_raw, to_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: what a documented placeholder stands for when the command is checked
PLACEHOLDERS = {"$URL": "postgresql://tide@localhost:5432/tide"}
#: the modules whose command line is Hydra's (overrides), not argparse
HYDRA_APPS = ("dse.__main__", "dse.accuracy", "dse.studies.group_study", "dse.studies.speculation")


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {' '.join(self.words)}"


def commands(path: Path) -> list[Command]:
    """The commands of a page's ``bash`` blocks (continuation lines joined, comments dropped; ``VAR=$(cmd)`` is
    ``cmd``)."""
    out: list[Command] = []
    lines = path.read_text().splitlines()
    in_block, pending, start = False, "", 0
    for number, line in enumerate(lines, start=1):
        if line.startswith("```"):
            in_block = line.strip() == "```bash" and not in_block
            continue
        if not in_block or not line.strip():
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = pending + line, ""
        assign = re.match(r"^\w+=\$\((.*)\)\s*$", text.strip())
        text = assign.group(1) if assign else text
        for key, value in PLACEHOLDERS.items():
            text = text.replace(key, value)
        words = tuple(w for w in shlex.split(text, comments=True) if w != "...")
        out.append(Command(str(path.relative_to(ROOT)), start, words))
    return out


ALL = [c for page in PAGES for c in commands(page)]


def test_the_pages_have_commands() -> None:
    assert len(ALL) > 60
    assert {c.page for c in ALL} >= {"README.md", "docs/install.md", "docs/searching.md", "docs/accuracy.md"}


def _sweep_first(override: str) -> str:
    """A multirun sweep's first job: ``a=x,y`` -> ``a=x``, ``a=range(8)`` -> ``a=0``."""
    key, _, value = override.partition("=")
    if value.startswith("range("):
        return f"{key}={value[6:-1].split(',')[0] if ',' in value else 0}"
    return f"{key}={value.split(',')[0]}" if "," in value and not value.startswith(("[", "{")) else override


def check_overrides(args: list[str], module: str) -> None:
    """Hydra overrides compose and validate (a search's: every check before its study; the accuracy command's: its
    specs); ``hydra/...`` group choices exist, ``hydra.*`` settings are Hydra's own."""
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = []
    for arg in args:
        if arg in ("-m", "--multirun") or arg.startswith("hydra."):
            continue
        if arg.startswith("hydra/"):
            group, _, choice = arg.partition("=")
            assert (CONF_DIR / group / f"{choice}.yaml").is_file(), f"{arg}: no such Hydra config"
            continue
        assert not arg.startswith("-"), f"{arg}: not an override"
        overrides.append(_sweep_first(arg) if multirun else arg)
    cfg = to_config(compose_raw(overrides))
    if module == "dse.__main__":
        check_search(cfg)
    cfg.quant.to_spec()
    cfg.kv.to_spec()


def _script(path: Path) -> ModuleType:
    sys.path.insert(0, str(path.parent))  # a benchmark imports its neighbours (benchmarks/_timing.py)
    try:
        spec = importlib.util.spec_from_file_location(f"_docs_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


def check_module(module: ModuleType, name: str, args: list[str]) -> None:
    if name in HYDRA_APPS:
        check_overrides(args, name)
        return
    assert hasattr(module, "build_parser"), f"{name}: no build_parser(), so its documented commands cannot be checked"
    try:
        ns = module.build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{name} refuses {args}") from exc
    if getattr(ns, "overrides", None):
        check_overrides([o for o in ns.overrides if not o.startswith("system=")] if name == "dse.studies.proxies"
                        else ns.overrides, name)


def check_python(words: list[str]) -> None:
    if words[0] == "-m":
        name, args = words[1], words[2:]
        if name == "pytest":
            paths = [a.split("::")[0] for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] != "-k"]
            assert all((ROOT / p).exists() for p in paths), paths
            return
        target = "dse.__main__" if name == "dse" else f"{name}.__main__" if (
            ROOT / name.replace(".", "/") / "__main__.py").exists() else name
        check_module(importlib.import_module(target), target, args)
        return
    path = ROOT / words[0]
    assert path.is_file(), f"{words[0]}: no such script"
    check_module(_script(path), words[0], words[1:])


def check_tide(words: list[str]) -> None:
    sub, args = words[0], words[1:]
    if sub == "studies":
        assert args[0] in cli.studies(), f"tide studies {args[0]}: no such study"
        name = f"dse.studies.{args[0]}"
        check_module(importlib.import_module(name), name, args[1:])
    elif sub == "bench":
        assert args[0] in cli.benchmarks(), f"tide bench {args[0]}: no such benchmark"
        check_module(_script(cli.BENCH_DIR / f"bench_{args[0]}.py"), f"bench_{args[0]}", args[1:])
    else:
        assert sub in cli.COMMANDS, f"tide {sub}: no such command"
        name = cli.COMMANDS[sub].module
        check_module(importlib.import_module(name), name, args)


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def check_shell_script(words: list[str]) -> None:
    path = ROOT / words[0]
    assert path.is_file(), f"{words[0]}: no such script"
    if len(words) > 1:
        cases = re.findall(r"^\s*([\w|-]+)\)", path.read_text(), re.M)
        assert any(words[1] in c.split("|") for c in cases), f"{words[0]}: no subcommand {words[1]} ({cases})"


@pytest.mark.parametrize("command", ALL, ids=str)
def test_every_documented_command_is_accepted(command: Command) -> None:
    words = list(command.words)
    head = words[0]
    if head == "make":
        targets = [w for w in words[1:] if "=" not in w]
        assert set(targets) <= make_targets(), f"no make target {set(targets) - make_targets()}"
    elif head == "tide":
        check_tide(words[1:])
    elif head in ("python", "python3", ".venv/bin/python"):
        check_python(words[1:])
    elif head == "bash":
        check_shell_script(words[1:])
    elif head.startswith("scripts/"):
        check_shell_script(words)
    elif head == "optuna-dashboard":
        assert (Path(sys.executable).parent / head).exists()
    elif head == "pip":
        makefile = (ROOT / "Makefile").read_text()
        pins = [w for w in words if "==" in w]
        assert pins and all(p in makefile for p in pins), f"{pins}: not what make setup installs"
    else:
        raise AssertionError(f"{command}: a command of an unknown kind (teach this test to check it)")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)#\s]+)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text()) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert missing == []


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024
