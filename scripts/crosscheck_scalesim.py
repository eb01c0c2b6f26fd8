"""Cross-check TIDE's per-GEMM cycle counts against SCALE-Sim 3 itself, on the SCALE-Sim inputs TIDE exports.

    .venv/bin/python scripts/crosscheck_scalesim.py [--out DIR] [DESIGN.yaml ...]

SCALE-Sim is installed into its own virtual environment (``--scalesim-venv``, default ``.venv-scalesim``:
``scalesim==3.0.0`` with ``numpy==2.3.5``, because SCALE-Sim 3.0.0 fails under NumPy 2.4; it is never a
dependency of TIDE). With no design files, the script first runs four one-point searches (``run_search``, the
same code as ``python -m dse``) on a small SmolLM2-135M workload so that SCALE-Sim finishes in minutes: a
systolic output-stationary and a weight-stationary design, a Tender INT4 design whose prefill GEMMs split at
chunk boundaries and whose attention runs at INT8 on the ganged half-size array, and a Tender INT8 design.
Each search exports its design file and, in ``designs/<stem>/``, the SCALE-Sim files this script runs
(``<view>.scalesim.cfg``, ``.topology.csv``, ``.layout.csv``; InterfaceBandwidth CALC, stall-free).

Per GEMM it compares SCALE-Sim's ``total_cycles`` (summed over the GEMM's layers: a Tender GEMM that splits at
chunk boundaries is one layer per piece) with TIDE's cycles from ``python -m dse.evaluate --breakdown``:
``stall-free = cycles - extra_cycles`` must equal SCALE-Sim's sum plus one cycle per extra piece (SCALE-Sim
drops one cycle per layer); ``extra_cycles`` (Tender's rescale bubbles, K-split refills, OLAccel stalls) is
what TIDE models beyond SCALE-Sim. Writes ``crosscheck.csv`` and ``crosscheck.md`` in ``--out``; exit 1 when
a stall-free difference is not zero.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: SCALE-Sim 3.0.0 fails under NumPy 2.4 (shared/reference/peers.md 2.4): pinned in its own environment
SCALESIM_PINS = ("scalesim==3.0.0", "numpy==2.3.5")

#: the workload of the built-in cases: small enough that SCALE-Sim (about 5,000 cycles per second) finishes
WORKLOAD = ["model=smollm2_135m", "workload.prompt_len=32", "workload.gen_len=2", "workload.decode_ctx_samples=0",
            "workload.include_lm_head=false", "accuracy.objective=none", "accuracy.max_ppl_increase=null",
            "search.progress=false", "output.report=false"]
#: (name, overrides): each a one-point search (its space is the one knob value given)
CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("systolic-os-32x32", ["system=systolic", "system.hw.cols=32", "system.hw.dataflow=os", "system.hw.bits=8"],
     {"rows": 32}),
    ("systolic-ws-64x64", ["system=systolic", "system.hw.cols=64", "system.hw.dataflow=ws", "system.hw.bits=8"],
     {"rows": 64}),
    ("tender-int4-64x64-chunk16", ["system=tender", "system.hw.bits=4", "system.hw.chunk=16", "system.hw.groups=8",
                                   "system.hw.cols=64"], {"rows": 64}),
    ("tender-int8-64x64", ["system=tender", "system.hw.bits=8", "system.hw.chunk=64", "system.hw.groups=4",
                           "system.hw.cols=64"], {"rows": 64}),
]

RUNNER = r"""
import json, sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout, input_type_gemm=True)
sim.run_scale(top_path=out)
names = [line.split(",")[0] for line in open(topo).read().splitlines()[1:] if line.strip()]
layers = sim.runner.single_layer_sim_object_list
print(json.dumps([{"layer": n, "total_cycles": int(o.total_cycles), "stall_cycles": int(o.stall_cycles)}
                  for n, o in zip(names, layers)]))
"""


def scalesim_python(venv: Path) -> Path:
    """The SCALE-Sim environment's interpreter (created and filled on first use)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(SCALESIM_PINS)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(python), "-c", "import scalesim, numpy; print(numpy.__version__)"],
                           capture_output=True, text=True, check=False)
    if check.returncode != 0 or check.stdout.strip() != SCALESIM_PINS[1].split("==")[1]:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *SCALESIM_PINS], check=True)
    return python


def one_point_designs(out: Path) -> list[Path]:
    """Run the built-in cases (one-point searches) and return their exported design files."""
    from omegaconf import OmegaConf

    from dse.app import run_search
    from dse.config import compose_raw, to_config

    designs = []
    for name, overrides, point in CASES:
        raw = compose_raw([*WORKLOAD, *overrides, "search/sampler=grid"])
        OmegaConf.set_struct(raw, False)
        space = OmegaConf.select(raw, "system.space")
        for knob in list(space):  # the space is the one point
            del space[knob]
        OmegaConf.update(raw, "system.space", {k: {"type": "categorical", "choices": [v]} for k, v in point.items()},
                         merge=True)
        run_dir = out / "runs" / name
        run_search(to_config(raw), run_dir)
        found = sorted((run_dir / "designs").glob("*.yaml"))
        if len(found) != 1:
            raise SystemExit(f"{name}: expected one exported design, found {len(found)} (infeasible?)")
        designs.append(found[0])
    return designs


def run_scalesim(python: Path, folder: Path, out: Path) -> dict[str, dict[str, int]]:
    """SCALE-Sim's per-layer cycles for every array view of one exported design."""
    results: dict[str, dict[str, int]] = {}
    for cfg in sorted(folder.glob("*.scalesim.cfg")):
        view = cfg.name.removesuffix(".scalesim.cfg")
        work = out / "scalesim" / folder.name / view
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        proc = subprocess.run([str(python), "-c", RUNNER, str(cfg), str(folder / f"{view}.topology.csv"),
                               str(folder / f"{view}.layout.csv"), str(work)], capture_output=True, text=True,
                              check=False, cwd=work)
        if proc.returncode != 0:
            raise SystemExit(f"SCALE-Sim failed on {cfg}:\n{proc.stderr[-3000:]}")
        layers = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {folder.name} {view}: {len(layers)} layers, {sum(x['total_cycles'] for x in layers):,} cycles "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
        results[view] = {x["layer"]: x["total_cycles"] for x in layers}
    return results


def compare(design: Path, scalesim: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per GEMM: SCALE-Sim's cycles (summed over the layers the design's hardware description maps to
    that GEMM) against TIDE's."""
    from dse.designs import design_system, load_design

    _, system, point = design_system(load_design(design))
    layers: dict[str, list[tuple[str, int]]] = {}  # op -> (view, SCALE-Sim cycles) of each of its layers
    for view in system.hardware(point).views:
        for layer in view.layers:
            layers.setdefault(layer.op, []).append((view.name, scalesim[view.name][layer.name]))
    label = design.stem if design.parent.parent.parent.name != "runs" else f"{design.parent.parent.name}"
    rows = []
    for r in system.breakdown(point):
        if r["op"] not in layers:  # vector work and leakage: not GEMMs
            continue
        hits = layers[r["op"]]
        tide, extra = r["cycles"] / r["count"], r["extra_cycles"] / r["count"]
        sim, pieces = sum(c for _, c in hits), len(hits)
        rows.append({"design": label, "view": hits[0][0], "op": r["op"], "M": int(r["M"]), "N": int(r["N"]),
                     "K": int(r["K"]), "layers": pieces, "scalesim_cycles": sim,
                     "tide_stall_free": tide - extra, "difference": (tide - extra) - (pieces - 1) - sim,
                     "tide_cycles": tide, "tide_extra": extra})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ["design", "view", "op", "M", "N", "K", "layers", "scalesim_cycles", "tide_stall_free", "difference",
            "tide_cycles", "tide_extra"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[h]:,.0f}" if isinstance(r[h], int | float) and h not in ("M", "N", "K")
                                       else str(r[h]) for h in head) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("designs", nargs="*", type=Path, help="exported design files (default: the built-in cases)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "crosscheck_scalesim")
    parser.add_argument("--scalesim-venv", type=Path, default=ROOT / ".venv-scalesim")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    python = scalesim_python(args.scalesim_venv)
    designs = args.designs or one_point_designs(args.out)
    rows: list[dict[str, Any]] = []
    for design in designs:
        folder = design.with_suffix("")
        if not any(folder.glob("*.scalesim.cfg")):
            print(f"{design}: no SCALE-Sim files (not an array design); skipped", file=sys.stderr)
            continue
        rows += compare(design, run_scalesim(python, folder, args.out))
    with (args.out / "crosscheck.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows)
    (args.out / "crosscheck.md").write_text(text)
    print(text)
    bad = [r for r in rows if abs(r["difference"]) > 1e-6]
    print(f"{len(rows)} GEMMs of {len(designs)} designs: stall-free difference zero on {len(rows) - len(bad)}, "
          f"non-zero on {len(bad)}; TIDE's extra cycles (bubbles, K-split refills) on "
          f"{sum(r['tide_extra'] > 0 for r in rows)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
