"""Regenerate ``scalesim_cycles.csv`` by running SCALE-Sim 3.0.0 itself (not needed by the tests).

SCALE-Sim is kept out of the project's dependencies (it needs numpy < 2.4; see peers.md 2.4):

    python3.11 -m venv /tmp/ss && /tmp/ss/bin/pip install scalesim==3.0.0 "numpy<2.4" six
    /tmp/ss/bin/python tests/data/make_scalesim_table.py

Each case runs in CALC (stall-free) mode with 1 MiB SRAMs and records SCALE-Sim's ``total_cycles``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from pathlib import Path

from scalesim.scale_sim import scalesim

# (M, K, N, R, C, dataflow): square and non-square arrays, ragged tiles, M = 1, all three dataflows.
CASES = [
    (64, 128, 96, 32, 32, "os"), (64, 128, 96, 32, 32, "ws"), (64, 128, 96, 32, 32, "is"),
    (100, 70, 50, 32, 16, "os"), (100, 70, 50, 32, 16, "ws"), (100, 70, 50, 32, 16, "is"),
    (1, 256, 512, 16, 16, "os"), (1, 256, 512, 16, 16, "ws"), (1, 256, 512, 16, 16, "is"),
    (37, 45, 29, 8, 12, "os"), (37, 45, 29, 8, 12, "ws"), (37, 45, 29, 8, 12, "is"),
    (200, 64, 130, 64, 16, "os"), (200, 64, 130, 16, 64, "ws"), (130, 300, 7, 16, 32, "is"),
    (512, 768, 768, 64, 64, "os"),  # the worked example of peers.md 2.1
]
LAYOUT_ROW = "1,1,1,1,1,1,1,2,0,4,5,3,3,0,1,2,7,4,5,6,"
HERE = Path(__file__).parent


def run_case(M: int, K: int, N: int, R: int, C: int, df: str, work: Path) -> int:
    cfg = work / "a.cfg"
    cfg.write_text(
        "[general]\nrun_name = t\n\n[architecture_presets]\n"
        f"ArrayHeight : {R}\nArrayWidth : {C}\nIfmapSramSzkB : 1024\nFilterSramSzkB : 1024\n"
        "OfmapSramSzkB : 1024\nIfmapOffset : 0\nFilterOffset : 10000000\nOfmapOffset : 20000000\n"
        f"Bandwidth : 10\nDataflow : {df}\nMemoryBanks : 1\nReadRequestBuffer : 32\nWriteRequestBuffer : 32\n\n"
        "[layout]\nIfmapCustomLayout : False\nIfmapSRAMBankBandwidth : 10\nIfmapSRAMBankNum : 10\n"
        "IfmapSRAMBankPort : 2\nFilterCustomLayout : False\nFilterSRAMBankBandwidth : 10\n"
        "FilterSRAMBankNum : 10\nFilterSRAMBankPort : 2\n\n"
        "[sparsity]\nSparsitySupport : false\nSparseRep : ellpack_block\nOptimizedMapping : false\n"
        "BlockSize : 8\nRandomNumberGeneratorSeed : 40\n\n"
        "[run_presets]\nInterfaceBandwidth : CALC\nUseRamulatorTrace : False\n"
    )
    topo = work / "t.csv"
    topo.write_text(f"Layer,M,N,K,\nfc,{M},{N},{K},\n")
    layout = work / "l.csv"
    layout.write_text("Layer," + ",".join(f"f{i}" for i in range(20)) + ",\nfc," + LAYOUT_ROW + "\n")
    sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                   layout=str(layout), input_type_gemm=True)
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=str(work))
    return int(sim.runner.single_layer_sim_object_list[0].total_cycles)


def main() -> None:
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            cycles = run_case(*case, Path(tmp))
        rows.append(dict(zip(("M", "K", "N", "R", "C", "dataflow"), case, strict=True), total_cycles=cycles))
        print(rows[-1], flush=True)
    with (HERE / "scalesim_cycles.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["M", "K", "N", "R", "C", "dataflow", "total_cycles"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
