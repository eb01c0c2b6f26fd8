"""``python -m dse.dashboard TARGET [--host H] [--port P]``: optuna-dashboard on a study, running or finished.

TARGET: a run directory (its ``study.journal``), a journal file, or a database URL (``postgresql://...``,
``sqlite:///...``). A journal is opened with TIDE's own file lock, so that anything the dashboard writes (notes,
a study's user attributes) is appended under the same lock as the workers' records; ``optuna-dashboard URL``
itself serves a database study just as well. Binds to 127.0.0.1 unless told otherwise: the dashboard has no
authentication, so reach it from elsewhere through an SSH tunnel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from dse.config import ConfigError


def storage_of(target: str) -> optuna.storages.BaseStorage:
    """The storage TARGET names (see the module docstring); a ConfigError naming it when it cannot open."""
    from dse.storage import JOURNAL_NAME, open_storage

    if "://" in target:
        return open_storage(target)
    path = Path(target)
    if path.is_dir():
        path = path / JOURNAL_NAME
    if not path.is_file():
        raise ConfigError(f"{target}: no study here (a run directory with {JOURNAL_NAME}, a journal file, or a "
                          "database URL)")
    return open_storage(str(path))


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="run directory, journal file or database URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        from optuna_dashboard import run_server
    except ImportError:
        sys.exit("optuna-dashboard is not installed: pip install optuna-dashboard (make setup installs it)")
    try:
        storage = storage_of(args.target)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ ({args.target}); Ctrl-C stops it", flush=True)
    run_server(storage, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
