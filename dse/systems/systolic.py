"""Family ``systolic``: a plain INT-N systolic accelerator (cost_models/accelerator.py)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from cost_models import accelerator, systolic
from dse.config import Bound, Config
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
from dse.systems._base import Evaluation, System, other_row, per_op_rows
from workloads import build_operators
from workloads.accuracy.measured import SelectionStats


class SystolicSystem(System):
    metrics = accelerator.METRICS
    intrinsic_constraints = {"acc_headroom_bits": Bound(min=0.0)}
    knob_choices = {"dataflow": systolic.DATAFLOWS}

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.ops = build_operators(cfg.model.to_shape(), cfg.workload.to_spec())
        self.tech = cfg.tech.to_tech()

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(accelerator.SystolicDesign))

    def design(self, points: dict[str, Any]) -> accelerator.SystolicDesign:
        return accelerator.SystolicDesign.from_mapping(points)

    def evaluate(self, points: dict[str, Any], selection: SelectionStats | None = None) -> Evaluation:
        design = self.design(points)
        metrics, _ = accelerator.evaluate(design, self.ops, self.tech)
        return Evaluation(metrics=metrics, invalid=design.invalid_reason())

    def breakdown(self, point: dict[str, Any]) -> list[dict[str, Any]]:
        """Every GEMM, then the leakage: the rows add up to the design's latency and energy."""
        metrics, per_op = accelerator.evaluate(self.design(point), self.ops, self.tech, per_op=True)
        leak = other_row("leakage", "leakage", "all", 0.0, float(metrics["energy_leak_j"][0]))
        return [*per_op_rows(self.ops, per_op), leak]

    def hardware(self, point: dict[str, Any]) -> Hardware:
        """DRAM, the A / B / C operand buffers, and per PE its pipeline registers, accumulator and MAC, with the
        energies and areas the cost model charges (cost_models/accelerator.py)."""
        d, t = self.design(point), self.tech
        R, C, b, acc = (int(v[0]) for v in (d.rows, d.cols, d.bits, d.acc_bits))
        df = systolic.DATAFLOWS[int(d.dataflow[0])]
        clock, bw = float(d.clock_ghz[0]), float(d.dram_bw_gbps[0])
        a_kib, b_kib, c_kib = float(d.a_buf_kib[0]), float(d.b_buf_kib[0]), float(d.c_buf_kib[0])
        moving = 2 * b if df == "os" else b + acc  # bits through a PE per advancing cycle (see the cost model)
        chip = (dram_unit(t, b, bw),
                sram_unit(t, "A_buffer", a_kib, b, ("Inputs",), "activations (ifmap), energy per operand"),
                sram_unit(t, "B_buffer", b_kib, b, ("Weights",), "weights / K / V (filter), energy per operand"),
                sram_unit(t, "C_buffer", c_kib, acc, ("Outputs",), "outputs and partial sums, energy per "
                          f"{acc}-bit partial sum"),
                periphery_unit(t))
        pe = (Unit("pipeline_regs", "regfile", R * C, float(t.reg_area_um2(2 * b)),
                   {"write": float(t.register_energy_pj(moving))}, {"depth": 1, "width": moving, "datawidth": moving},
                   note=f"two {b}-bit operand registers; energy per clocked cycle of the {moving} bits that move "
                        f"through a PE in {df}"),
              Unit("accumulator", "regfile", R * C, float(t.reg_area_um2(acc)),
                   {"update": float(t.register_energy_pj(acc))}, {"depth": 1, "width": acc, "datawidth": acc},
                   ("Outputs",),
                   note=f"{acc}-bit accumulator register, clocked once per MAC (os)"),
              Unit("mac", "intmac", R * C, float(t.mult_area_um2(b) + t.int_add_area_um2(acc)),
                   {"compute": float(t.mac_energy_pj(b, acc))}, {"multiplier_width": b, "adder_width": acc},
                   note=f"{b} x {b} multiplier and {acc}-bit adder, energy per MAC"))
        layers = tuple(Layer(layer_name(n), n, round(m), round(nn), round(k))
                       for n, m, nn, k in zip(self.ops.names, self.ops.M, self.ops.N, self.ops.K, strict=True))
        view = ArrayView("array", R, C, df, b, round(a_kib), round(b_kib), round(c_kib),
                         words_per_cycle(bw, clock, b), layers)
        return Hardware(self.name, self.tech_name, clock, R, C, chip, pe, (view,))


SYSTEM = SystolicSystem
