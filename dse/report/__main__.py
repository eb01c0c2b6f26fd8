"""``python -m dse.report RUN_DIR [RUN_DIR ...] --out report.html``: the interactive HTML report of one or more
finished searches (one self-contained file: it opens offline in any browser).

Exit status: 0 written; 2 bad input (a directory that is not a finished run, an older format, runs that share
no objective, an unknown trial): one line on stderr naming it (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dse.report.runs import ReportError


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each holds trials.csv and summary.json)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="the HTML file to write")
    parser.add_argument("--label", action="append", help="a name for each run, in order (default: system / model "
                        "/ tech / sampler from its summary.json)")
    parser.add_argument("--design", type=int, help="break down this trial of the first run instead of the knee")
    parser.add_argument("--max-shown", type=int, default=None, metavar="N",
                        help="draw at most N dominated-feasible and N infeasible trials of each run in the Pareto view "
                        "(a uniform sample; every Pareto design is drawn; default 4000, dse.report.html.MAX_SHOWN; "
                        "0: all)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dse.report.html import write_report  # plotly after the command line is parsed

    try:
        shown = {} if args.max_shown is None else {"max_shown": args.max_shown or None}
        path = write_report(args.runs, args.out, labels=args.label, design=args.design, **shown)
    except (ReportError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
