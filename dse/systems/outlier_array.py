"""Family ``outlier_array``: Tender and the outlier-aware accelerators it is compared with (ANT,
OLAccel, OliVe), one model (cost_models/tender.py) with one ``Scheme`` each, whose mechanism parameters
come from ``system.mechanism`` (each with its source)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from cost_models import tender, tender_prepared
from dse.config import Bound, Config, ConfigError
from dse.hardware import (
    ArrayView,
    Hardware,
    Layer,
    Unit,
    dram_unit,
    layer_name,
    periphery_unit,
    sram_unit,
    words_per_cycle,
)
from dse.systems._base import Evaluation, System, other_row, per_op_rows, scheme_from_mechanism
from dse.systems._spec import SpecTemplate
from workloads import build_operators
from workloads.accuracy.measured import SelectionStats
from workloads.accuracy.specs import KVSpec, QuantSpec

#: the QuantSpec fields a Tender design point sets; the others (rounding, weight quantisation) come from ``quant.*``
TENDER_SET = ("method", "bits", "groups", "chunk", "mode", "quantize_attention")
#: the QuantSpec fields a baseline's scheme sets where its mechanism names them (the cost model's parameter is the
#: measured algorithm's too): ANT's and OliVe's 8-bit share, OLAccel's outlier ratio
SCHEME_SET = ("int8_share", "outlier_ratio")


def tender_template(cfg: Config) -> SpecTemplate[QuantSpec]:
    return SpecTemplate.of(QuantSpec, cfg.quant, TENDER_SET)


def tender_quant(template: SpecTemplate[QuantSpec], point: Mapping[str, Any]) -> QuantSpec:
    """The Tender quantisation a design point's knobs imply (bits, groups, chunk, mode, Tender (all)) over the
    ``quant.*`` fields it does not set: the cost model and the measured accuracy describe the same design."""
    mode = point["mode"]
    return template.build(method="tender", bits=int(point["bits"]), groups=int(point["groups"]),
                          chunk=int(point["chunk"]), mode=mode if isinstance(mode, str) else tender.MODES[int(mode)],
                          quantize_attention=bool(point["quantize_attention"]))


class OutlierArraySystem(System):
    metrics = tender.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}
    knob_choices = {"mode": tender.MODES, "int8_pe": tender.INT8_PE}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()
        # the model's own inputs (model.baseline_inputs.<system>) replace the system's defaults
        mechanism = {**cfg.system.mechanism, **cfg.model.baseline_inputs.get(self.name, {})}
        self.scheme = scheme_from_mechanism(tender.Scheme, mechanism, name=self.name)
        self.method = cfg.system.quant_method
        if self.method is not None and self.scheme.decomposed != (self.method == "tender"):
            raise ConfigError(f"system.quant_method: {self.method!r} with system.mechanism.decomposed="
                              f"{int(self.scheme.decomposed)}: Tender's decomposition is measured as tender, a "
                              "scheme without it by its own method (or null: not measured)")
        self.from_scheme = tuple(k for k in SCHEME_SET if k in mechanism)
        self.quant = tender_template(cfg) if self.scheme.decomposed else SpecTemplate.of(
            QuantSpec, cfg.quant, ("method", "bits", *self.from_scheme))

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(tender.TenderDesign))

    def design(self, points: dict[str, Any]) -> tender.TenderDesign:
        return tender.TenderDesign.from_mapping(points)

    def accuracy_spec(self, point: dict[str, Any]) -> tuple[QuantSpec, KVSpec | None] | None:
        """Tender: the quantisation its design point implies; a baseline: its own method (``system.quant_method``)
        at the design's width, with the scheme's 8-bit share or outlier ratio (the cost model's value, so the
        measured accuracy and the cost describe one design); None without ``system.quant_method``."""
        if self.method is None:
            return None
        if self.scheme.decomposed:
            return tender_quant(self.quant, point), None
        return self.quant.build(method=self.method, bits=int(point["bits"]),
                                **{k: getattr(self.scheme, k) for k in self.from_scheme}), None

    def spec_inputs(self) -> dict[str, dict[str, Any]]:
        return {"quant": self.quant.read()} if self.method is not None else {}

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Every GEMM, then the non-GEMM vector work of each phase (norms, softmax, activations on the VPU) and
        the leakage: the rows add up to the design's latency and energy."""
        b = tender.breakdown(self.design(point), self.ops, self.tech, self.scheme)
        vector = [other_row(f"vector ({phase})", "vector", phase, float(b.vector_latency_s[0, i]),
                            float(b.vector_energy_j[0, i])) for i, phase in enumerate(("prefill", "decode"))]
        return [*per_op_rows(self.ops, b.per_op), *vector, other_row("leakage", "leakage", "all", 0.0,
                                                                      float(b.leakage_j[0]))]

    def hardware(self, point: dict[str, Any]) -> Hardware:
        """HBM, the scratchpad (two halves: activations, weights), index buffer, output buffer, vector unit and
        edge logic; per PE its pipeline registers, accumulator and MAC (4-bit, or 8-bit native), with the
        energies and areas the cost model charges (cost_models/tender.py). The GEMMs as SCALE-Sim layers on the
        array each one sees: R x C at 4 bits, R/2 x C/2 for INT8 on ganged PEs; a decomposed GEMM's rows split
        at chunk boundaries (output tiles may not straddle a chunk)."""
        d, t, sc = self.design(point), self.tech, self.scheme
        R, C, b, acc, chunk = (int(v[0]) for v in (d.rows, d.cols, d.bits, d.acc_bits, d.chunk))
        clock, bw = float(d.clock_ghz[0]), float(d.hbm_bw_gbps[0])
        spad, out_kib, idx_kib = float(d.scratchpad_kib[0]), float(d.out_buf_kib[0]), float(d.index_buf_kib[0])
        native = int(d.int8_pe[0]) == 1
        mb = int(tender.multiplier_bits(d)[0])
        dec = sc.decomposed
        chip = [dram_unit(t, b, bw),
                sram_unit(t, "scratchpad_A", spad / 2, b, ("Inputs",), "scratchpad half for activations, energy "
                          "per operand"),
                sram_unit(t, "scratchpad_B", spad / 2, b, ("Weights",), "scratchpad half for weights / K / V"),
                sram_unit(t, "output_buffer", out_kib, acc, ("Outputs",), f"{acc}-bit outputs and partial sums; "
                          "TIDE charges a write and a read per partial sum")]
        if dec:
            chip.append(sram_unit(t, "index_buffer", idx_kib, 8, (), "Tender's channel order, energy per byte",
                                  energy_kib=max(idx_kib, 1e-3)))
        chip.append(Unit("vector_unit", "fpu", int(d.vpu_lanes[0]), float(t.fp32_lane_area_um2()),
                         {"compute": float(t.fp32_op_energy_pj())}, note="FP32 lanes (epilogue, statistics, norms, "
                         "softmax), energy per lane operation"))
        edge = float(tender.edge_area_um2(t, d, sc)[0])
        if edge > 0:
            chip.append(Unit("edge_logic", "dummy", 1, edge, {}, note="array-edge logic: decoders, K-split "
                             "accumulate lanes (and shifters), outlier MAC units"))
        chip.append(periphery_unit(t))
        area = {k: float(v[0]) for k, v in tender.pe_area_parts_um2(t, d, sc).items()}
        e_mac = {k: float(v) for k, v in tender.mac_energy_pj(t, float(acc)).items()}
        compute = {"compute_int8": e_mac["int8_native" if native else "int8_ganged"]}
        if not native:
            compute = {"compute_int4": e_mac["int4"], **compute}
        op_bits = int(tender.operand_register_bits(d, sc)[0])
        e_acc_reg = float(t.register_energy_pj(acc))
        pe = (Unit("pipeline_regs", "regfile", R * C, area["pipeline_regs"],
                   {"write": float(t.register_energy_pj(op_bits))},
                   {"depth": 1, "width": op_bits, "datawidth": op_bits},
                   note=f"two {mb}-bit operand registers" + (" and the 1-bit rescale signal" if dec else "")
                   + "; energy per clocked cycle"),
              Unit("accumulator", "regfile", R * C, area["accumulator"],
                   {"update": e_acc_reg, **({"shift": e_acc_reg} if dec else {})},
                   {"depth": 1, "width": acc, "datawidth": acc}, ("Outputs",),
                   note=f"{acc}-bit accumulator, clocked per MAC" + (" and per rescale shift" if dec else "")),
              Unit("mac", "intmac", R * C, area["mac"], compute, {"multiplier_width": mb, "adder_width": acc},
                   note=f"{mb}-bit multiplier, {acc}-bit adder" + ("" if native else ", 1/4 of a 2x2 gang's "
                   "merge adders (compute_int8: one INT8 MAC of a gang)") + (", the rescale 2:1 mux" if dec else "")))
        return Hardware(self.name, self.tech_name, clock, R, C, tuple(chip), pe,
                        self._views(d, chunk, spad, out_kib, bw, clock),
                        notes=(f"{sc.name}: a share {sc.int8_share:g} of INT4 work falls back to INT8; SCALE-Sim's "
                               "files hold the main width only",) if sc.int8_share > 0 else ())

    def _views(self, d: tender.TenderDesign, chunk: int, spad: float, out_kib: float, bw: float, clock: float
               ) -> tuple[ArrayView, ...]:
        widths, decomposed = tender.op_widths(d, self.ops, self.scheme)
        rows, cols = tender.array_seen(widths, d)
        views: dict[tuple[int, int, int], list[Layer]] = {}
        for i, op in enumerate(self.ops.names):
            M, N, K = round(self.ops.M[i]), round(self.ops.N[i]), round(self.ops.K[i])
            pieces = tender.chunk_pieces(M, chunk) if decomposed[0, i] else [M]
            layers = [Layer(layer_name(op) + (f".chunk{j}" if len(pieces) > 1 else ""), op, m, N, K)
                      for j, m in enumerate(pieces)]
            views.setdefault((int(widths[0, i]), int(rows[0, i]), int(cols[0, i])), []).extend(layers)
        return tuple(ArrayView(f"int{w}", r, c, "os", w, round(spad / 2), round(spad / 2), round(out_kib),
                               words_per_cycle(bw, clock, w), tuple(layers),
                               note=("ganged 2x2 4-bit PEs" if (r, c) != (int(d.rows[0]), int(d.cols[0])) else ""))
                     for (w, r, c), layers in views.items())

    def evaluate(self, points: dict[str, Any], selection: SelectionStats | None = None) -> Evaluation:
        design = self.design(points)
        return Evaluation(metrics=tender.evaluate(design, self.ops, self.tech, self.scheme),
                          invalid=design.invalid_reason())

    def prepare(self, points: dict[str, Any]) -> tender_prepared.Prepared:
        return tender_prepared.prepare(self.design(points))

    def evaluate_prepared(self, prepared: tender_prepared.Prepared, hw: dict[str, float],
                          selection: SelectionStats | None = None) -> Evaluation:
        metrics, invalid = tender_prepared.evaluate_prepared(prepared, self.ops, self.tech, self.scheme, hw)
        return Evaluation(metrics=metrics, invalid=invalid)


SYSTEM = OutlierArraySystem
