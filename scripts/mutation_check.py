"""Mutation check: apply small, plausible defects to a copy of the tree and run the tests that should
catch them; every mutation must make the suite fail ("caught"). The audit of issue #18 found four
such defects that the suite let through; this keeps them (and others) covered.

    python scripts/mutation_check.py            # all mutations, a markdown table on stdout

Each mutation runs on a fresh copy of the tracked files in a temporary directory, with ``shared/`` linked
beside it as the checkout has it; exit status 1 if any mutation survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (what, file, old text, new text, optional second old/new, tests that should fail)
T, F, OFF, S, E, J = ("tests/test_tender.py", "tests/test_fidelity.py", "tests/test_offload.py", "tests/test_search.py",
                    "tests/test_emulation.py", "tests/test_joint.py")
MUTATIONS = [
    ("hypervolume ignores maximised objectives", "dse/pareto.py",
     "    f_all = to_minimisation(feasible, directions)",
     "    f_all = np.asarray(feasible, dtype=np.float64)",
     "    pts = (to_minimisation(front, directions) - lo) / span",
     "    pts = (np.asarray(front, dtype=np.float64) - lo) / span",
     ["tests/test_pareto.py", S]),
    ("Pareto filter treats maximised objectives as minimised", "dse/pareto.py",
     "    pts = to_minimisation(values, directions)\n    n = pts.shape[0]",
     "    pts = np.asarray(values, dtype=np.float64)\n    n = pts.shape[0]", None, None,
     ["tests/test_pareto.py", S]),
    ("Tender metadata bytes dropped", "cost_models/tender.py",
     "    hbm = hbm_ops + meta + outlier_bytes", "    hbm = hbm_ops + outlier_bytes", None, None, [T, F]),
    ("Tender rescale-shift energy dropped", "cost_models/tender.py",
     "    e_array = macs * e_mac_op + e_bubble + e_outlier", "    e_array = macs * e_mac_op + e_outlier", None, None,
     [T, F]),
    ("InfiniGen CPU gather time dropped", "cost_models/offload.py",
     "        exposed = np.maximum(0.0, gather + sel_h2d - c.ffn_time)",
     "        exposed = np.maximum(0.0, sel_h2d - c.ffn_time)", None, None, [OFF, F]),
    ("H2O budget ignored in the bytes moved", "cost_models/offload.py",
     "        return c.L * c.e * np.minimum(c.n, c.col(c.k_cap)).sum(axis=1) * c.d.batch * c.cc",
     "        return c.L * c.e * c.n.sum() * c.d.batch * c.cc", None, None, [OFF, F]),
    ("emulation cache keyed on the buffer address (the audit's stale activations)",
     "workloads/accuracy/emulation.py",
     "        return cls(x, x._version)", "        return cls((x.data_ptr(), tuple(x.shape)), x._version)",
     "        return x is self.tensor and x._version == self.version",
     "        return (x.data_ptr(), tuple(x.shape)) == self.tensor and x._version == self.version", [E]),
    ("oracle key drops the rounding rule", "dse/oracle.py",
     "        quant = dataclasses.asdict(spec)\n",
     "        quant = dataclasses.asdict(spec)\n        quant.pop('rounding')\n", None, None, ["tests/test_oracle.py"]),
    ("Tender accuracy spec drops quantize_attention (audit item 7)", "dse/systems/outlier_array.py",
     "                     quantize_attention=bool(point[\"quantize_attention\"]))", "                     )",
     None, None, [T, J]),
    ("joint KV cache always 16 bits (audit item 8)", "cost_models/joint.py",
     '    kv_bits = float(point["bits"]) if float(point["kv_quantized"]) > 0 else 16.0', "    kv_bits = 16.0",
     None, None, [J]),
    ("vectorised offload evaluation mixes up points", "cost_models/offload.py",
     "lambda idx: _evaluate(d.take(idx), shape", "lambda idx: _evaluate(d.take(idx[:1].repeat(len(idx))), shape",
     None, None, ["tests/test_systems.py"]),
]

def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


def run(mutation: tuple, files: list[str], tmp: Path) -> tuple[str, str, str]:
    name, rel, old, new, old2, new2, tests = mutation
    tree = tmp / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    for f in files:
        (tree / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tree / f)
    path = tree / rel
    text = path.read_text()
    for a, b in ((old, new), (old2, new2)):
        if a is None:
            continue
        if a not in text:
            raise SystemExit(f"mutation {name!r}: text not found in {rel} (the code changed; update the table)")
        text = text.replace(a, b)
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=tree,
                          capture_output=True, text=True, env=env)
    failed = [line.split("::", 1)[1].split(" ")[0] for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    return name, ("caught" if proc.returncode != 0 else "SURVIVED"), ", ".join(failed) or proc.stdout[-200:]


def main() -> int:
    files = tracked_files()
    with tempfile.TemporaryDirectory() as tmp:
        shared = ROOT.parent / "shared"
        if shared.exists():
            (Path(tmp) / "shared").symlink_to(shared)
        print("| mutation | result | first failing test |")
        print("|---|---|---|")
        results = []
        for mutation in MUTATIONS:
            name, result, detail = run(mutation, files, Path(tmp))
            results.append(result)
            print(f"| {name} | {result} | {detail} |", flush=True)
    return 0 if all(r == "caught" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
