"""A plain INT-N output/weight/input-stationary systolic accelerator running a whole LLM workload.

Components (Accelergy-style action counts x per-action energies, per-unit areas):

* an R x C array of b-bit MAC PEs with an ``acc_bits`` accumulator;
* three operand SRAM buffers (A: activations, B: weights or K/V, C: outputs/partial sums);
* DRAM at ``dram_bw_gbps``; fixed periphery (control, DMA, interconnect);
* leakage proportional to area over the run time.

Latency per GEMM is ``max(compute cycles / clock, DRAM bytes / bandwidth)`` (double-buffered
overlap, see ``systolic.bandwidth_bound_seconds``). Operands are b-bit; outputs are written to DRAM
requantised to b bits; partial sums live in the output buffer at ``acc_bits``.

An accumulator narrower than ``2b + ceil(log2 K_max)`` bits can overflow: ``acc_headroom_bits``
reports the margin (negative = the design is infeasible).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cost_models import systolic
from cost_models.design import array_fields, evaluate_valid, first_failure
from cost_models.metrics import described, with_derived
from cost_models.tech import Tech
from workloads.operators import GemmOps, Phase

KIB = 1024.0


@dataclass(frozen=True)
class SystolicDesign:
    """Design points as equally long 1-D arrays (one entry per design point)."""

    rows: np.ndarray
    cols: np.ndarray
    dataflow: np.ndarray  # codes into systolic.DATAFLOWS
    bits: np.ndarray
    acc_bits: np.ndarray
    clock_ghz: np.ndarray
    a_buf_kib: np.ndarray
    b_buf_kib: np.ndarray
    c_buf_kib: np.ndarray
    dram_bw_gbps: np.ndarray
    kslice_max_overhead: np.ndarray  # mapper: largest extra-cycle share a K-split tiling may cost (os); 0 = never
    double_buffered: bool = True

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SystolicDesign:
        """Broadcast scalars and arrays in ``values`` to a common 1-D length."""
        names = array_fields(cls, values, skip=("double_buffered",))
        arrays = {n: np.asarray(values[n]) for n in names}
        arrays["dataflow"] = systolic.dataflow_code(arrays["dataflow"])
        shaped = np.broadcast_arrays(*(np.atleast_1d(arrays[n]) for n in names))
        out = {n: (a.astype(np.int64) if n == "dataflow" else a.astype(np.float64)) for n, a in
               zip(names, shaped, strict=True)}
        return cls(**out, double_buffered=bool(values.get("double_buffered", True)))

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def take(self, sl: slice | np.ndarray) -> SystolicDesign:
        kw = {f.name: getattr(self, f.name)[sl] for f in fields(self) if f.name != "double_buffered"}
        return SystolicDesign(**kw, double_buffered=self.double_buffered)

    def invalid_reason(self) -> np.ndarray:
        """Per point: empty string if physically meaningful, else why not."""
        return first_failure(len(self), [
            (self.rows < 1, "rows < 1"),
            (self.cols < 1, "cols < 1"),
            (self.bits < 2, "bits < 2"),
            (self.clock_ghz <= 0, "clock_ghz <= 0"),
            (self.dram_bw_gbps <= 0, "dram_bw_gbps <= 0"),
            ((self.a_buf_kib <= 0) | (self.b_buf_kib <= 0) | (self.c_buf_kib <= 0), "buffer size <= 0"),
            (self.kslice_max_overhead < 0, "kslice_max_overhead < 0"),
        ])


METRICS: dict[str, str] = described({
    "energy_mac_j": "MAC-array energy [J]",
    "energy_sram_j": "operand-buffer energy [J]",
    "energy_dram_j": "DRAM energy [J]",
    "energy_leak_j": "leakage energy [J]",
    "area_mm2": "total area [mm^2]",
    "area_pe_mm2": "PE-array area [mm^2]",
    "area_sram_mm2": "operand-buffer area [mm^2]",
    "utilization": "MAC-weighted array utilisation [0-1]",
    "acc_headroom_bits": "accumulator width minus the worst-case 2b + ceil(log2 K) [bits]",
})


@dataclass(frozen=True)
class PerOp:
    """Per design point x GEMM breakdown (each entry for all ``count`` executions of the GEMM)."""

    cycles: np.ndarray
    latency_s: np.ndarray
    energy_j: np.ndarray
    dram_bytes: np.ndarray
    #: the part of ``cycles`` beyond SCALE-Sim's stall-free count of the same tiles (K-split refills and
    #: drains, Tender's rescale bubbles, OLAccel's outlier stalls): ``cycles - extra_cycles`` is what SCALE-Sim
    #: 3 reports for the GEMM in CALC mode (scripts/crosscheck_scalesim.py)
    extra_cycles: np.ndarray


def _evaluate_chunk(d: SystolicDesign, ops: GemmOps, tech: Tech, df: int) -> tuple[dict[str, np.ndarray], PerOp]:
    """All points of ``d`` share the dataflow ``df`` (so only its formulas are computed)."""
    col = lambda a: a[:, None]  # noqa: E731 - design arrays as a column against the GEMM row
    R, C = col(d.rows), col(d.cols)
    bits, acc = col(d.bits), col(d.acc_bits)
    M, K, N, cnt = ops.M[None, :], ops.K[None, :], ops.N[None, :], ops.count[None, :]
    op_bytes = bits / 8.0
    psum_bytes = acc / 8.0

    sram = systolic.sram_accesses(M, K, N, R, C, df)
    dram = systolic.dram_traffic(
        M, K, N, R, C, df, a_bytes=op_bytes, b_bytes=op_bytes, c_bytes=op_bytes, psum_bytes=psum_bytes,
        a_buf=col(d.a_buf_kib) * KIB, b_buf=col(d.b_buf_kib) * KIB, c_buf=col(d.c_buf_kib) * KIB,
        double_buffered=d.double_buffered, sram=sram, max_slice_overhead=col(d.kslice_max_overhead),
    )
    # SCALE-Sim's cycles, plus one more fill/drain per tile for every extra K slice of a K-split tiling
    # (whose partial sums accumulate in the output buffer: one more write and read per slice).
    n_folds = systolic.folds(M, K, N, R, C, df)
    extra = n_folds * (dram.k_slices - 1) * (R + C - 2)
    cycles = systolic.gemm_cycles(M, K, N, R, C, df) + extra
    psum_rmw = M * N * (dram.k_slices - 1)
    lat = systolic.bandwidth_bound_seconds(cycles, col(d.clock_ghz) * 1e9, dram.total, col(d.dram_bw_gbps) * 1e9)

    macs = M * K * N
    # Registers (clock + data): the bits that move through every PE each array cycle (os: both
    # operands; ws/is: the streamed operand and the partial sum), and in os the accumulator, which is
    # clocked once per MAC (enable-gated).
    moving_bits = np.where(df == 0, 2 * bits, bits + acc)
    acc_updates = np.where(df == 0, macs, 0.0)
    e_regs = cycles * R * C * tech.register_energy_pj(moving_bits) + acc_updates * tech.register_energy_pj(acc)
    e_mac = macs * tech.mac_energy_pj(bits, acc) + e_regs
    rd_a, rd_b, rd_c = (tech.sram_read_pj_per_byte(col(x)) for x in (d.a_buf_kib, d.b_buf_kib, d.c_buf_kib))
    wr_a, wr_b, wr_c = (tech.sram_write_pj_per_byte(col(x)) for x in (d.a_buf_kib, d.b_buf_kib, d.c_buf_kib))
    e_sram = (
        sram.a_reads * op_bytes * rd_a + sram.b_reads * op_bytes * rd_b
        + ((sram.c_writes + psum_rmw) * wr_c + (sram.c_reads + psum_rmw) * rd_c) * psum_bytes
        + dram.a_bytes * wr_a + dram.b_bytes * wr_b  # DRAM fills are buffer writes
    )
    e_dram = dram.total * tech.dram_energy_pj_per_byte

    lat_all = lat * cnt
    e_dyn = (e_mac + e_sram + e_dram) * cnt * 1e-12

    area_pe = d.rows * d.cols * tech.pe_area_um2(d.bits, d.acc_bits) / 1e6
    area_sram = tech.sram_area_mm2(d.a_buf_kib) + tech.sram_area_mm2(d.b_buf_kib) + tech.sram_area_mm2(d.c_buf_kib)
    area = area_pe + area_sram + tech.periphery_area_mm2

    latency = lat_all.sum(axis=1)
    prefill = ops.phase == int(Phase.PREFILL)
    e_leak = tech.leakage_mw_per_mm2 * 1e-3 * area * latency
    energy = e_dyn.sum(axis=1) + e_leak
    total_cycles = (cycles * cnt).sum(axis=1)
    gen_tokens = float(ops.generated_tokens)
    k_max = float(ops.K.max())
    metrics = with_derived({
        "latency_s": latency,
        "prefill_latency_s": lat_all[:, prefill].sum(axis=1),
        "decode_latency_s": lat_all[:, ~prefill].sum(axis=1),
        "energy_j": energy,
        "energy_mac_j": (e_mac * cnt).sum(axis=1) * 1e-12,
        "energy_sram_j": (e_sram * cnt).sum(axis=1) * 1e-12,
        "energy_dram_j": (e_dram * cnt).sum(axis=1) * 1e-12,
        "energy_leak_j": e_leak,
        "area_mm2": area,
        "area_pe_mm2": area_pe,
        "area_sram_mm2": area_sram,
        "utilization": (macs * cnt).sum(axis=1) / (d.rows * d.cols * total_cycles),
        "acc_headroom_bits": d.acc_bits - (2 * d.bits + np.ceil(np.log2(k_max))),
    }, gen_tokens)
    per_op = PerOp(cycles=cycles * cnt, latency_s=lat_all, energy_j=e_dyn, dram_bytes=dram.total * cnt,
                   extra_cycles=extra * cnt)
    return metrics, per_op


def evaluate(design: SystolicDesign, ops: GemmOps, tech: Tech, *, chunk: int = 8192,
             per_op: bool = False) -> tuple[dict[str, np.ndarray], PerOp | None]:
    """Metrics (``METRICS``) for every design point; optionally the per-GEMM breakdown.

    Valid points are evaluated in chunks of ``chunk`` (bounding P x O temporaries), one dataflow at a
    time (only its formulas are computed); invalid points (``SystolicDesign.invalid_reason``) get NaN."""
    breakdown = [f"per_op.{f.name}" for f in fields(PerOp)] if per_op else []

    def run(idx: np.ndarray) -> dict[str, np.ndarray]:
        m, p = _evaluate_chunk(design.take(idx), ops, tech, int(design.dataflow[idx[0]]))
        return {**m, **{f"per_op.{f.name}": getattr(p, f.name) for f in fields(PerOp)}}

    out = evaluate_valid(design, run, [*METRICS, *breakdown], chunk=chunk, groups=design.dataflow,
                         trailing={k: (len(ops),) for k in breakdown})
    joined = PerOp(*(out.pop(k) for k in breakdown)) if per_op else None
    return out, joined
