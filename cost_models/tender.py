"""Tender and the outlier-aware accelerators it is compared with, as one parameterised model.

All four designs share an output-stationary R x C array of 4-bit PEs (INT8 by 2x2 ganging, so an
INT8 GEMM sees an R/2 x C/2 array), a scratchpad, an INT32 output buffer, a floating-point vector
unit (VPU) and HBM. What differs is how each handles activation outliers (``Scheme``):

* **Tender** decomposes each row chunk's channels into G power-of-two groups. Per output tile one
  rescale bubble cycle per group boundary crossed (``g_eff - 1``; ``g_eff = 0`` means the worst case
  ``G``); output tiles may not straddle a chunk, so a chunk of fewer rows than the array under-fills
  it; per chunk the index buffer streams the channel order and the metadata (channel order, split
  points, tmax, bias, output correction) crosses HBM; in runtime mode the VPU also computes the
  per-chunk channel maxima/minima and the grouping. PE extra: an accumulator-wide 2:1 mux, a 1-bit
  rescale register (the shift is wiring).
* **ANT** keeps 4-bit PEs with a per-operand type decoder; to hold accuracy at INT4 a share of the
  GEMM work falls back to 8 bits (2x2 ganged, 4x the cycles of INT4, 2x the bytes).
* **OLAccel** routes outlier activations (ratio rho) to separate high-precision outlier MAC units; an
  outlier stalls its PE row for ``stall_cycles``, the outlier units add area, and outliers travel as
  sparse (value, index) pairs.
* **OliVe** encodes outlier-victim pairs in place (4-bit values with an outlier type): decoders on
  the array edge and an output encoder cost area and energy; a share of the work may also need 8 bits.

Every latency is per GEMM ``max(array cycles / clock, HBM bytes / bandwidth, VPU epilogue time)``
(double-buffered overlap); the VPU's non-GEMM work (norms, softmax, activation functions) runs in
series. HBM traffic comes from ``systolic.dram_traffic``: full-K tilings, or a K-split tiling whose
partial sums accumulate in the output buffer when it moves fewer bytes and costs at most
``kslice_max_overhead`` extra array cycles (charged: one more fill/drain per tile and slice). With K
split, Tender's rescale shifts of later slices are applied to the stored partial sum when it is
accumulated (a barrel shift by the number of group boundaries crossed; the accumulate adders and
shifters of the C drain lanes are in the area whenever the mapper may split K).
Energies are action counts x per-action energies from the technology table; register energy is per
clocked bit (operand pipeline registers every advancing cycle, accumulators per update).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from cost_models import systolic
from cost_models.accelerator import PerOp
from cost_models.design import array_fields, combination_codes, evaluate_valid, first_failure
from cost_models.metrics import described, with_derived
from cost_models.tech import Tech
from workloads.operators import GemmOps, Phase

KIB = 1024.0
MODES = ("runtime", "calibrated")
INT8_PE = ("ganged", "native")


@dataclass(frozen=True)
class Scheme:
    """Mechanism parameters of one design family (Tender or a baseline)."""

    name: str
    decomposed: bool = False  # Tender's channel-group decomposition (bubbles, chunks, metadata)
    int8_share: float = 0.0  # share of MACs that must run at 8 bits when the design runs at 4 bits
    outlier_ratio: float = 0.0  # OLAccel: share of activations treated as outliers
    weight_outlier_ratio: float = 0.0  # OLAccel: share of weights treated as outliers (an extra MAC per lane group)
    stall_clock_gated: bool = True  # OLAccel: a stall gates the array clock (False: the held registers still clock)
    outlier_stall_cycles: float = 0.0  # OLAccel: stall cycles per array cycle in which an outlier enters
    outlier_pe_share: float = 0.0  # OLAccel: outlier MAC units per regular PE
    outlier_bits: int = 16  # OLAccel: outlier precision
    decoder_bits_per_pe_edge: float = 0.0  # ANT/OliVe: decoder logic per array edge lane, in adder bits
    decode_energy_add_bits: float = 0.0  # ANT/OliVe: energy per decoded operand, in adder-bit equivalents
    encode_energy_add_bits: float = 0.0  # OliVe: energy per encoded output element, in adder-bit equivalents


@dataclass(frozen=True)
class TenderDesign:
    """Design points (equal-length 1-D arrays)."""

    rows: np.ndarray
    cols: np.ndarray
    bits: np.ndarray
    groups: np.ndarray
    g_eff: np.ndarray  # effective group span for bubbles; 0 = worst case (groups)
    chunk: np.ndarray
    mode: np.ndarray  # codes into MODES
    int8_pe: np.ndarray  # codes into INT8_PE: 2x2 ganged 4-bit PEs or native 8-bit PEs
    quantize_attention: np.ndarray  # 1: QK^T and PV decomposed too (Tender (all)); 0: run at INT8
    acc_bits: np.ndarray
    clock_ghz: np.ndarray
    scratchpad_kib: np.ndarray
    index_buf_kib: np.ndarray
    out_buf_kib: np.ndarray
    hbm_bw_gbps: np.ndarray
    vpu_lanes: np.ndarray
    vpu_ops_per_output: np.ndarray
    kslice_max_overhead: np.ndarray  # mapper: largest extra-cycle share a K-split tiling may cost; 0 = never

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TenderDesign:
        names = array_fields(cls, values)
        raw = {n: np.atleast_1d(np.asarray(values[n])) for n in names}
        raw["mode"] = _codes(raw["mode"], MODES, "mode")
        raw["int8_pe"] = _codes(raw["int8_pe"], INT8_PE, "int8_pe")
        raw["quantize_attention"] = raw["quantize_attention"].astype(bool).astype(np.float64)
        shaped = np.broadcast_arrays(*(raw[n] for n in names))
        return cls(**{n: a.astype(np.float64) for n, a in zip(names, shaped, strict=True)})

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def take(self, idx: np.ndarray) -> TenderDesign:
        return TenderDesign(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def invalid_reason(self) -> np.ndarray:
        return first_failure(len(self), [
            ((self.rows < 2) | (self.cols < 2), "array smaller than 2 x 2"),
            (((self.rows % 2 != 0) | (self.cols % 2 != 0)) & (self.bits == 8) & (self.int8_pe == 0),
             "INT8 ganging needs even rows and cols"),
            (~np.isin(self.bits, (4, 8)), "bits must be 4 or 8"),
            (self.groups < 1, "groups < 1"),
            (self.g_eff > self.groups, "g_eff > groups"),
            (self.chunk < 1, "chunk < 1"),
            ((self.clock_ghz <= 0) | (self.hbm_bw_gbps <= 0) | (self.vpu_lanes < 1), "non-positive rate"),
            ((self.scratchpad_kib <= 0) | (self.out_buf_kib <= 0) | (self.index_buf_kib < 0), "buffer size"),
            (self.kslice_max_overhead < 0, "kslice_max_overhead < 0"),
        ])


def _codes(values: np.ndarray, names: tuple[str, ...], key: str) -> np.ndarray:
    if values.dtype.kind in "US":
        bad = sorted({str(v) for v in values.ravel() if str(v) not in names})
        if bad:
            raise ValueError(f"{key} must be one of {list(names)}, got {bad}")
        return np.array([names.index(str(v)) for v in values.ravel()]).reshape(values.shape)
    return values.astype(np.int64)


METRICS: dict[str, str] = described({
    "energy_mac_j": "PE-array energy (MACs, rescale bubbles, outlier units) [J]",
    "energy_sram_j": "scratchpad, index- and output-buffer energy [J]",
    "energy_dram_j": "HBM energy [J]",
    "energy_vpu_j": "vector-unit energy [J]",
    "energy_leak_j": "leakage energy [J]",
    "area_mm2": "total area [mm^2]",
    "area_pe_mm2": "PE-array area [mm^2]",
    "area_sram_mm2": "on-chip buffer area [mm^2]",
    "area_vpu_mm2": "vector-unit area [mm^2]",
    "utilization": "useful MACs / (PEs x array cycles) [0-1]",
    "bubble_share": "share of array cycles spent in rescale bubbles [0-1]",
    "acc_headroom_bits": "accumulator width minus 2b + ceil(log2 K) + (G - 1) [bits]",
})


def multiplier_bits(d: TenderDesign) -> np.ndarray:
    """Multiplier width of one PE: 4 (INT8 by 2x2 ganging) or 8 (native INT8 PEs)."""
    return np.where(d.int8_pe == 1, 8.0, 4.0)


def operand_register_bits(d: TenderDesign, scheme: Scheme) -> np.ndarray:
    """Bits of a PE's operand pipeline registers: two operands of the multiplier width, plus Tender's 1-bit
    rescale signal."""
    return 2 * multiplier_bits(d) + (1.0 if scheme.decomposed else 0.0)


def pe_area_parts_um2(tech: Tech, d: TenderDesign, scheme: Scheme) -> dict[str, np.ndarray]:
    """Area of one PE by unit: the MAC (multiplier, accumulator adder, its share of the 2x2 ganging adders,
    Tender's accumulator-wide 2:1 mux; the rescale shift is wiring), the operand pipeline registers and the
    accumulator register."""
    acc = d.acc_bits
    # 2x2 ganging: per gang of 4 PEs two adders of 2b+4 bits to merge the four 4-bit products.
    gang = np.where(d.int8_pe == 1, 0.0, 2 * tech.int_add_area_um2(np.full_like(acc, 12.0)) / 4)
    mux = tech.mux_area_um2(acc) if scheme.decomposed else np.zeros_like(acc)
    return {"mac": tech.mult_area_um2(multiplier_bits(d)) + tech.int_add_area_um2(acc) + gang + mux,
            "pipeline_regs": tech.reg_area_um2(operand_register_bits(d, scheme)),
            "accumulator": tech.reg_area_um2(acc)}


def pe_area_um2(tech: Tech, d: TenderDesign, scheme: Scheme) -> np.ndarray:
    """Area of one PE of the array (including its share of INT8 ganging logic)."""
    return sum(pe_area_parts_um2(tech, d, scheme).values())


def mac_energy_pj(tech: Tech, acc_bits: np.ndarray) -> dict[str, np.ndarray]:
    """Energy of one MAC by kind: at 4 bits; at 8 bits on a 2x2 gang of 4-bit PEs (four 4-bit products, two
    12-bit merge adds, one accumulator add); at 8 bits on a native 8-bit PE."""
    e_acc = tech.int_add_energy_pj(acc_bits)
    return {"int4": tech.mult_energy_pj(4.0) + e_acc,
            "int8_ganged": 4 * tech.mult_energy_pj(4.0) + 2 * tech.int_add_energy_pj(12.0) + e_acc,
            "int8_native": tech.mult_energy_pj(8.0) + e_acc}


def edge_area_um2(tech: Tech, d: TenderDesign, scheme: Scheme) -> np.ndarray:
    """Logic on the array edges: ANT/OliVe decoders, OLAccel outlier MAC units, and where the mapper may
    split K, the output buffer's accumulate path (mm^2 x 1e6)."""
    edge = (d.rows + d.cols) * tech.int_add_area_um2(np.full_like(d.rows, scheme.decoder_bits_per_pe_edge))
    # K split: each of the C drain lanes adds a tile's partial sum to the stored one (an acc-wide
    # adder); Tender first shifts the stored sum left by the group boundaries the slice crossed, a
    # barrel shifter of ceil(log2 G) 2:1-mux stages at accumulator width.
    ksplit = d.kslice_max_overhead > 0
    stages = np.ceil(np.log2(np.maximum(d.groups, 2))) if scheme.decomposed else np.zeros_like(d.groups)
    lane = tech.int_add_area_um2(d.acc_bits) + stages * tech.mux_area_um2(d.acc_bits)
    edge = edge + np.where(ksplit, d.cols * lane, 0.0)
    # An outlier unit multiplies a b_outlier-bit outlier by a b-bit operand (area as a sqrt(b_o b)-bit
    # square multiplier) and adds into an accumulator-wide partial sum.
    ob = np.sqrt(float(scheme.outlier_bits) * d.bits)
    outlier_unit = tech.mult_area_um2(ob) + tech.int_add_area_um2(d.acc_bits)
    return edge + scheme.outlier_pe_share * d.rows * d.cols * outlier_unit


def iso_area_side(tech: Tech, design: TenderDesign, scheme: Scheme, budget_mm2: float) -> np.ndarray:
    """Largest even n (2 ... 4096) such that an n x n array of this scheme's PEs (with its edge logic) fits
    ``budget_mm2``: how many PEs each design gets when all are compared at equal array area. The area grows
    with n, so a bisection over the even sides finds it."""
    def fits(half: np.ndarray) -> np.ndarray:
        side = 2.0 * half
        trial = TenderDesign(**{**{f.name: getattr(design, f.name) for f in fields(design)}, "rows": side,
                                "cols": side})
        return array_area_mm2(tech, trial, scheme) <= budget_mm2

    lo, hi = np.ones(len(design)), np.full(len(design), 2048.0)  # half-sides: lo fits (or is the floor)
    hi_fits = fits(hi)
    for _ in range(12):  # 2^11 = 2048 half-sides
        mid = np.floor((lo + hi) / 2)
        ok = fits(mid)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return 2.0 * np.where(hi_fits, hi, lo)


def array_area_mm2(tech: Tech, design: TenderDesign, scheme: Scheme) -> np.ndarray:
    """PE array plus its edge logic."""
    return (design.rows * design.cols * pe_area_um2(tech, design, scheme) + edge_area_um2(tech, design, scheme)) / 1e6


def op_widths(d: TenderDesign, ops: GemmOps, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """Per design point and GEMM ([P, O]): the operand width it runs at, and whether its activation is
    decomposed into channel groups. Attention matmuls that are not decomposed (``quantize_attention`` off)
    run at INT8 with one group."""
    attention = np.array([k.startswith("attn") for k in ops.kinds])[None, :]
    quant_attn = d.quantize_attention[:, None] > 0
    decomposed_op = scheme.decomposed & (~attention | quant_attn)
    return np.where(attention & ~quant_attn, 8.0, d.bits[:, None]), decomposed_op


def array_seen(b: np.ndarray, d: TenderDesign) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the array that b-bit operands see: R/2 x C/2 for INT8 on ganged 4-bit PEs."""
    gang = (b == 8) & (d.int8_pe[:, None] == 0)
    R, C = d.rows[:, None], d.cols[:, None]
    return np.where(gang, R / 2, R), np.where(gang, C / 2, C)


def chunk_pieces(M: int, chunk: int) -> list[int]:
    """The row counts a decomposed GEMM's M splits into: output tiles may not straddle a chunk."""
    full, rest = divmod(M, chunk)
    return [chunk] * full + ([rest] if rest else [])


def _chunk_row_folds(M: np.ndarray, chunk: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Row folds when output tiles may not cross a chunk boundary."""
    full = np.floor(M / chunk)
    rest = M - full * chunk
    return full * np.ceil(chunk / R) + np.ceil(rest / R)


@dataclass(frozen=True)
class Breakdown:
    """Where one design's time and energy go: per GEMM (``per_op``, each entry for all ``count`` executions),
    the non-GEMM vector work per phase ([P, 2]: prefill, decode) and the leakage [P]; together they add up
    to ``latency_s`` and ``energy_j``."""

    per_op: PerOp
    vector_latency_s: np.ndarray
    vector_energy_j: np.ndarray
    leakage_j: np.ndarray


#: the only knobs that the array-side costs do not read: everything else is computed once per distinct combination
#: of the other knobs (an exhaustive chunk of 10^5 points holds a few thousand), then timed per point
TIMING = ("clock_ghz", "hbm_bw_gbps")


@dataclass(frozen=True)
class ArraySide:
    """What a design costs independent of its clock and memory bandwidth: per GEMM ([U, O]) the array cycles, their
    stall-free part, bubbles, HBM bytes, VPU cycles and energies (pJ), per phase the vector unit's cycles ([U, 2]),
    per design ([U]) the energy parts (J), areas and the metrics that need no time."""

    cycles: np.ndarray
    stall_free: np.ndarray
    hbm: np.ndarray
    busiest: np.ndarray  # per GEMM the larger of the array's and the VPU's cycles
    vec_cycles: np.ndarray
    e_op: np.ndarray
    e_vec: np.ndarray
    parts: dict[str, np.ndarray]
    static: dict[str, np.ndarray]


def distinct(d: TenderDesign) -> tuple[TenderDesign, np.ndarray]:
    """The design points that differ in an array-side knob (every knob but ``TIMING``), and for each point of ``d``
    the index of its representative."""
    first, inverse = combination_codes([getattr(d, f.name) for f in fields(d) if f.name not in TIMING])
    return d.take(first), inverse


def _costs(d: TenderDesign, ops: GemmOps, tech: Tech, scheme: Scheme, per_op: bool = False
           ) -> tuple[dict[str, np.ndarray], Breakdown | None]:
    """Metrics (and with ``per_op`` the breakdown): the array side once per distinct array-side design, the timing
    per point."""
    unique, inverse = distinct(d)
    a = _array_side(unique, ops, tech, scheme)
    return _timed(a, inverse, d, ops, tech, per_op)


def _array_side(d: TenderDesign, ops: GemmOps, tech: Tech, scheme: Scheme) -> ArraySide:
    col = lambda a: a[:, None]  # noqa: E731
    M, K, N, cnt = ops.M[None, :], ops.K[None, :], ops.N[None, :], ops.count[None, :]
    attention = np.array([k.startswith("attn") for k in ops.kinds])[None, :]
    R, C = col(d.rows), col(d.cols)
    op_bits, decomposed_op = op_widths(d, ops, scheme)
    groups = np.where(decomposed_op, col(np.where(d.g_eff > 0, d.g_eff, d.groups)), 1.0)

    spad = col(d.scratchpad_kib) * KIB
    psum_bytes = col(d.acc_bits) / 8
    idx_bits = np.ceil(np.log2(np.maximum(K, 2)))

    def at_width(b: np.ndarray) -> tuple[np.ndarray, ...]:
        """(array cycles, bubble cycles, accumulator shifts, HBM bytes, scratchpad fill bytes, partial
        sums accumulated in the output buffer, scratchpad A and B reads in elements, index-buffer reads
        in bytes, A and B elements fetched from HBM) of each GEMM with operands of b bits, on the array
        that width sees (R/2 x C/2 tiles for ganged INT8)."""
        Re, Ce = array_seen(b, d)
        row_folds = np.where(decomposed_op, _chunk_row_folds(M, col(d.chunk), Re), np.ceil(M / Re))
        col_folds = np.ceil(N / Ce)
        folds = row_folds * col_folds
        # Scratchpad reads: each A row panel once per column fold, each B column panel once per row
        # fold (chunk-bounded row folds for decomposed operands). Computed once and shared with the
        # DRAM model (its fallback when no panel fits is "every SRAM read comes from DRAM").
        sram = systolic.SramAccesses(a_reads=M * K * col_folds, b_reads=K * N * row_folds, c_writes=M * N,
                                     c_reads=0.0 * M * N)
        # Memory traffic: scratchpad split between activations and weights; outputs requantised.
        traffic = systolic.dram_traffic(M, K, N, Re, Ce, "os", a_bytes=b / 8, b_bytes=b / 8, c_bytes=b / 8,
                                        psum_bytes=psum_bytes, a_buf=spad / 2, b_buf=spad / 2,
                                        c_buf=col(d.out_buf_kib) * KIB, double_buffered=True, sram=sram,
                                        max_slice_overhead=col(d.kslice_max_overhead))
        bubbles = folds * (groups - 1)
        # A K-split tiling refills and drains each tile once per slice (the rescale shifts of
        # Tender happen once per group boundary, whichever slice it falls in).
        fold_cycles = traffic.k_slices * (Re + Ce - 2) + K
        # The index buffer supplies one channel address per reduction step of every fold.
        idx_reads = np.where(decomposed_op, folds * K * idx_bits / 8, 0.0)
        # SCALE-Sim's stall-free count of the same folds (os: R + C + K - 2 per fold, minus one)
        stall_free = folds * (Re + Ce + K - 2) - 1
        return (folds * fold_cycles + bubbles - 1, bubbles, bubbles * Re * Ce, traffic.total,
                traffic.a_bytes + traffic.b_bytes, M * N * (traffic.k_slices - 1), sram.a_reads, sram.b_reads,
                idx_reads, traffic.a_bytes / (b / 8), traffic.b_bytes / (b / 8), stall_free)

    share8 = np.where(op_bits == 4, scheme.int8_share, 0.0)  # fallback only matters for INT4 designs
    main = at_width(op_bits)
    mixed = at_width(np.full_like(op_bits, 8.0)) if scheme.int8_share > 0 else main
    busy, bubbles, shifts, hbm_ops, fills, psum_accs, a_reads, b_reads, idx_reads, a_fetched, b_fetched, \
        stall_free = (
        (1 - share8) * a + share8 * b for a, b in zip(main, mixed, strict=True))
    spad_reads = a_reads + b_reads
    # OLAccel: the array advances in lock-step, so a cycle in which any of the R' rows receives an
    # outlier activation stalls the wavefront for ``outlier_stall_cycles`` while the outlier unit works.
    cycles = busy
    if scheme.outlier_ratio > 0:
        p_outlier_cycle = 1.0 - (1.0 - scheme.outlier_ratio) ** R
        cycles = busy * (1.0 + p_outlier_cycle * scheme.outlier_stall_cycles)
    bytes_per = (1 - share8) * op_bits / 8 + share8 * 1.0

    n_chunks = np.ceil(M / col(d.chunk))
    # Tender metadata per chunk and decomposed operand: order + split points + tmax, FP16 bias (shared
    # by the GEMMs reading the same input), FP16 output correction beta W^T per output channel.
    meta = np.where(decomposed_op, n_chunks * ((K * idx_bits + col(d.groups) * idx_bits) / 8 + 2 + 2 * K)
                    * ops.input_share[None, :] + n_chunks * 2 * N, 0.0)
    # OLAccel keeps its outliers as sparse (value, index) lists beside the dense 4-bit tensors, fetched
    # with them: activation outliers with every A fetch, weight outliers with every B fetch.
    outlier_entry = (scheme.outlier_bits + idx_bits) / 8
    outlier_bytes = (scheme.outlier_ratio * a_fetched + scheme.weight_outlier_ratio * b_fetched) * outlier_entry
    hbm = hbm_ops + meta + outlier_bytes

    # VPU epilogue per output element, plus runtime statistics per chunk (max, min, bias subtract,
    # binning against G thresholds) shared by the GEMMs that read the same activation.
    lanes = col(d.vpu_lanes)
    runtime = decomposed_op & (col(d.mode) == 0)
    stat_ops = np.where(runtime, n_chunks * (3 * np.minimum(M, col(d.chunk)) * K + K * col(d.groups))
                        * ops.input_share[None, :], 0.0)
    vpu_ops = M * N * col(d.vpu_ops_per_output) + stat_ops
    vpu_cycles = np.ceil(vpu_ops / lanes)

    # Non-GEMM vector work, in series: norms ~6 ops/elem, softmax ~5, activation ~4 (stated estimates).
    vec_ops = ops.norm_elems * 6 + ops.softmax_elems * 5 + ops.act_elems * 4
    vec_cycles = np.ceil(vec_ops[None, :] / lanes)  # (P, 2 phases)

    # Energy.
    macs = M * K * N
    gang_pe = col(d.int8_pe) == 0
    e_mac = mac_energy_pj(tech, col(d.acc_bits))
    e4 = e_mac["int4"]
    e8 = np.where(gang_pe, e_mac["int8_ganged"], e_mac["int8_native"])
    e_mac_op = np.where(op_bits == 8, e8, (1 - share8) * e4 + share8 * e8)
    # Registers (clock + data): every PE's operand pipeline registers (two operands, plus Tender's
    # 1-bit rescale signal) shift in every cycle the wavefront advances (busy, fill/drain, idle rows,
    # bubbles); an OLAccel stall gates the array clock. An accumulator is clocked only when it updates
    # (enable-gated): once per MAC (at INT8 one accumulator per 2x2 gang, the other three idle) and
    # once per rescale shift (A <- A << 1; the 2:1 mux's own switching is not in the table).
    operand_bits = col(operand_register_bits(d, scheme))
    e_acc_reg = tech.register_energy_pj(col(d.acc_bits))
    e_regs = busy * R * C * tech.register_energy_pj(operand_bits) + macs * e_acc_reg
    if not scheme.stall_clock_gated:  # held (enable-gated) registers still receive the clock in a stall
        e_regs = e_regs + (cycles - busy) * R * C * tech.register_energy_pj(operand_bits)
    e_bubble = shifts * e_acc_reg
    # OLAccel's outlier MACs (an outlier activation on the dedicated high-precision units, an outlier
    # weight on its lane group's extra MAC): a b_outlier x b product (energy as a sqrt(b_o b)-bit square
    # multiplier), an accumulator-wide add, and the update of the shared partial sum it merges into.
    outlier_macs = (scheme.outlier_ratio + scheme.weight_outlier_ratio) * macs
    e_outlier = outlier_macs * (tech.mult_energy_pj(np.sqrt(float(scheme.outlier_bits) * op_bits))
                                + tech.int_add_energy_pj(col(d.acc_bits)) + e_acc_reg)
    decode_e = tech.int_add_energy_pj(scheme.decode_energy_add_bits)
    encode_e = tech.int_add_energy_pj(scheme.encode_energy_add_bits)
    e_spad_rd = tech.sram_read_pj_per_byte(col(d.scratchpad_kib) / 2)
    e_spad_wr = tech.sram_write_pj_per_byte(col(d.scratchpad_kib) / 2)
    e_obuf = tech.sram_write_pj_per_byte(col(d.out_buf_kib)) + tech.sram_read_pj_per_byte(col(d.out_buf_kib))
    e_idx = tech.sram_read_pj_per_byte(np.maximum(col(d.index_buf_kib), 1e-3))
    e_array = macs * e_mac_op + e_bubble + e_outlier + e_regs + spad_reads * decode_e + M * N * encode_e
    outlier_reads = (scheme.outlier_ratio * a_reads + scheme.weight_outlier_ratio * b_reads) * outlier_entry
    e_sram = (spad_reads * bytes_per + outlier_reads) * e_spad_rd + (fills + outlier_bytes) * e_spad_wr \
        + (M * N + psum_accs) * psum_bytes * e_obuf + idx_reads * e_idx
    e_dram = hbm * tech.dram_energy_pj_per_byte
    e_vpu = vpu_ops * tech.fp32_op_energy_pj()
    e_vec = vec_ops[None, :] * tech.fp32_op_energy_pj()

    area_pe = array_area_mm2(tech, d, scheme)
    area_sram = (tech.sram_area_mm2(d.scratchpad_kib) + tech.sram_area_mm2(d.index_buf_kib * scheme.decomposed)
                 + tech.sram_area_mm2(d.out_buf_kib))
    area_vpu = d.vpu_lanes * tech.fp32_lane_area_um2() / 1e6
    area = area_pe + area_sram + area_vpu + tech.periphery_area_mm2

    parts = {k: (v * cnt).sum(axis=1) * 1e-12 for k, v in
             (("mac", e_array), ("sram", e_sram), ("dram", e_dram), ("vpu", e_vpu))}
    parts["vpu"] = parts["vpu"] + e_vec.sum(axis=1) * 1e-12
    total_cycles = (cycles * cnt).sum(axis=1)
    k_max = float(ops.K[~attention[0]].max())
    static = {
        "energy_mac_j": parts["mac"],
        "energy_sram_j": parts["sram"],
        "energy_dram_j": parts["dram"],
        "energy_vpu_j": parts["vpu"],
        "area_mm2": area,
        "area_pe_mm2": area_pe,
        "area_sram_mm2": area_sram,
        "area_vpu_mm2": area_vpu,
        "utilization": (macs * cnt).sum(axis=1) / (d.rows * d.cols * total_cycles
                                                  / np.where(d.bits == 8, np.where(d.int8_pe == 0, 4, 1), 1)),
        "bubble_share": (bubbles * cnt).sum(axis=1) / total_cycles,
        "acc_headroom_bits": d.acc_bits - (2 * d.bits + np.ceil(np.log2(k_max))
                                           + np.where(scheme.decomposed, d.groups - 1, 0)),
    }
    return ArraySide(cycles=cycles, stall_free=stall_free, hbm=hbm, busiest=np.maximum(cycles, vpu_cycles),
                     vec_cycles=vec_cycles,
                     e_op=e_array + e_sram + e_dram + e_vpu, e_vec=e_vec, parts=parts, static=static)


@dataclass(frozen=True)
class Timing:
    """Each point's latency (s): in all, of the prefill and of the decode phase."""

    latency: np.ndarray
    prefill: np.ndarray
    decode: np.ndarray


def _timing(a: ArraySide, inverse: np.ndarray, d: TenderDesign, ops: GemmOps
            ) -> tuple[Timing, np.ndarray, np.ndarray]:
    """Each point's latencies from its representative's array side and its own clock and HBM bandwidth, with the
    per-GEMM latencies ([P, O], counts applied) and the vector unit's per phase ([P, 2])."""
    col = lambda x: x[:, None]  # noqa: E731
    cnt = ops.count[None, :]
    clock = col(d.clock_ghz) * 1e9
    # max(cycles / clock, hbm / bw, vpu / clock) as max(max(cycles, vpu) / clock, hbm / bw): the same floats (division
    # by a positive number keeps the order), one gather and one division fewer per point and GEMM
    lat = np.maximum(a.busiest[inverse] / clock, a.hbm[inverse] / (col(d.hbm_bw_gbps) * 1e9))
    lat_all = lat * cnt
    vec_time = a.vec_cycles[inverse] / clock  # (P, 2 phases)
    prefill = ops.phase == int(Phase.PREFILL)
    timing = Timing(lat_all.sum(axis=1) + vec_time.sum(axis=1), lat_all[:, prefill].sum(axis=1) + vec_time[:, 0],
                    lat_all[:, ~prefill].sum(axis=1) + vec_time[:, 1])
    return timing, lat_all, vec_time


def _metrics(a: ArraySide, inverse: np.ndarray, t: Timing, ops: GemmOps, tech: Tech
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The metrics from each point's representative and its latencies, and its leakage energy (J)."""
    parts = {k: v[inverse] for k, v in a.parts.items()}
    static = {k: v[inverse] for k, v in a.static.items()}
    e_leak = tech.leakage_mw_per_mm2 * 1e-3 * static["area_mm2"] * t.latency
    energy = sum(parts.values()) + e_leak
    metrics = with_derived({
        "latency_s": t.latency,
        "prefill_latency_s": t.prefill,
        "decode_latency_s": t.decode,
        "energy_j": energy,
        **{k: static[k] for k in ("energy_mac_j", "energy_sram_j", "energy_dram_j", "energy_vpu_j")},
        "energy_leak_j": e_leak,
        **{k: static[k] for k in ("area_mm2", "area_pe_mm2", "area_sram_mm2", "area_vpu_mm2", "utilization",
                                  "bubble_share", "acc_headroom_bits")},
    }, float(ops.generated_tokens))
    return metrics, e_leak


def _timed(a: ArraySide, inverse: np.ndarray, d: TenderDesign, ops: GemmOps, tech: Tech, per_op: bool
           ) -> tuple[dict[str, np.ndarray], Breakdown | None]:
    """Each point's latencies from its representative's array side and its own clock and HBM bandwidth; the
    leakage and the metrics that follow from latency and energy."""
    timing, lat_all, vec_time = _timing(a, inverse, d, ops)
    metrics, e_leak = _metrics(a, inverse, timing, ops, tech)
    if not per_op:
        return metrics, None
    cnt = ops.count[None, :]
    cycles, hbm = a.cycles[inverse], a.hbm[inverse]
    breakdown = Breakdown(
        per_op=PerOp(cycles=cycles * cnt, latency_s=lat_all, energy_j=a.e_op[inverse] * cnt * 1e-12,
                     dram_bytes=hbm * cnt, extra_cycles=(cycles - a.stall_free[inverse]) * cnt),
        vector_latency_s=vec_time, vector_energy_j=a.e_vec * 1e-12, leakage_j=e_leak)
    return metrics, breakdown


def breakdown(design: TenderDesign, ops: GemmOps, tech: Tech, scheme: Scheme) -> Breakdown:
    """Per-GEMM and per-phase costs of valid design points (see :class:`Breakdown`)."""
    bad = design.invalid_reason()
    if any(bad):
        raise ValueError(f"invalid design: {next(b for b in bad if b)}")
    out = _costs(design, ops, tech, scheme, per_op=True)[1]
    assert out is not None
    return out


def evaluate(design: TenderDesign, ops: GemmOps, tech: Tech, scheme: Scheme, *, chunk: int = 16384
             ) -> dict[str, np.ndarray]:
    """Metrics (``METRICS``) per design point; invalid points (``invalid_reason``) get NaN."""
    return evaluate_valid(design, lambda idx: _costs(design.take(idx), ops, tech, scheme)[0], METRICS, chunk=chunk)
