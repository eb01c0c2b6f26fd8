"""``python -m dse.studies.screening``: would a cheap accuracy screen (one short window) save time without
changing the front?

For every accuracy key of a system's space (the combinations of its accuracy knobs, see
:mod:`dse.exhaustive`), the full measurement (the configured windows, from the oracle's cache or measured)
and a screening measurement (``--windows`` x ``--seq-len`` tokens) are taken. The study reports the rank
correlation (Spearman) of their perplexity increases, the full measurement time with and without the
screen, and which keys a screen would have skipped: those whose screened increase, divided by the largest
factor by which the screen over-states a clear increase (the screen's stated uncertainty, times ``--safety``),
is still above the
accuracy constraint. The front is unchanged when none of the skipped keys has a design on the exact front
(it is enumerated with every key fully measured).

    python -m dse.studies.screening system=tender
    python -m dse.studies.screening system=infinigen
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from dse.config import Config, compose_raw, to_config
from dse.coupling import problem_for
from dse.exhaustive import accuracy_knobs, enumerate_front
from dse.oracle import AccuracyOracle
from dse.space import grid_space
from dse.systems import make_system


def compose(overrides: list[str]) -> Config:
    return to_config(compose_raw(overrides))


def keys_of(cfg: Config) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    import itertools

    system = make_system(cfg)
    grid = grid_space(dict(cfg.system.space))
    knobs = accuracy_knobs(system, grid, True)
    return knobs, [dict(zip(knobs, c, strict=True)) for c in itertools.product(*(grid[k] for k in knobs))]


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--windows", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--safety", type=float, default=1.5)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cfg = compose([*args.overrides, "accuracy.progress=false", "search.progress=false"])
    system = make_system(cfg)
    knobs, combos = keys_of(cfg)
    full = AccuracyOracle(cfg.accuracy)
    screen = AccuracyOracle(dataclasses.replace(cfg.accuracy, windows=args.windows, seq_len=args.seq_len),
                            beside=full)
    base_full, base_screen = full.baseline().ppl, screen.baseline().ppl
    rows = []
    for params in combos:
        spec = system.accuracy_spec(system.complete(params))
        assert spec is not None
        f = full.measure(*spec)
        t0 = time.perf_counter()
        s = screen.measure(*spec)
        rows.append({**params, "full": f.ppl - base_full, "screen": s.ppl - base_screen, "full_s": f.seconds,
                     "screen_s": s.seconds if not s.cached else s.seconds or time.perf_counter() - t0})
    full_inc = np.array([r["full"] for r in rows])
    scr_inc = np.array([r["screen"] for r in rows])
    finite = np.isfinite(full_inc) & np.isfinite(scr_inc)
    rho = spearmanr(full_inc[finite], scr_inc[finite]).statistic
    bound = cfg.accuracy.max_ppl_increase
    # the screen's uncertainty, relative: the largest factor by which it over-states a clear increase (> 0.5)
    clear = finite & (full_inc > 0.5) & (scr_inc > 0.5)
    over = float(np.max(scr_inc[clear] / full_inc[clear])) if clear.any() else float("inf")
    margin = args.safety * over
    skipped = [r for r in rows if bound is not None and np.isfinite(margin) and r["screen"] / margin > bound]
    # the exact front with every key fully measured: does any skipped key have a design on it?
    problem, _ = problem_for(cfg, system)
    front = enumerate_front(system, problem, cfg.system.space, workers=2, progress=False)
    on_front = {tuple(p[k] for k in knobs) for p in front.params}
    lost = [r for r in skipped if tuple(r[k] for k in knobs) in on_front]
    t_full = sum(r["full_s"] for r in rows)
    t_screened = sum(r["screen_s"] for r in rows) + sum(r["full_s"] for r in rows if r not in skipped)
    print(f"{cfg.system.name}: {len(rows)} accuracy keys ({', '.join(knobs)}); full {cfg.accuracy.windows} x "
          f"{cfg.accuracy.seq_len}, screen {args.windows} x {args.seq_len} tokens")
    print(f"{'key':34s} {'full inc':>10s} {'screen inc':>10s} {'full s':>7s} {'screen s':>8s}")
    for r in rows:
        name = " ".join(f"{k}={r[k]}" for k in knobs)
        print(f"{name:34s} {r['full']:10.3f} {r['screen']:10.3f} {r['full_s']:7.1f} {r['screen_s']:8.1f}"
              + ("  skipped" if r in skipped else ""))
    print(f"Spearman rho (screen vs full ppl increase): {rho:.3f}")
    print(f"largest screen / full factor {over:.3f}; margin factor {margin:.3f} (x{args.safety}); bound {bound}")
    print(f"keys skipped by the screen: {len(skipped)} of {len(rows)}; of them on the exact front: {len(lost)}")
    print(f"measurement time: full only {t_full:.0f} s, screened {t_screened:.0f} s "
          f"({t_screened / t_full:.2f}x); front {'unchanged' if not lost else 'CHANGED'}")


if __name__ == "__main__":
    main()
