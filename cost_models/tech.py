"""Technology parameters (plain numbers; their sources live in ``conf/tech/*.yaml``).

Scaling rules used by the models (stated, applied here, never pre-multiplied in config):

* Arithmetic energy and area are anchored at Horowitz's 45 nm figures for an 8-bit multiplier and
  a 32-bit adder. A ``b``-bit array multiplier scales with ``b^2`` and a ripple/prefix adder with
  ``b`` (the usual first-order rules; Horowitz's 8-bit vs 32-bit adder and multiplier points follow
  them within 2x).
* Another node multiplies these 45 nm anchors by ``logic_energy_scale`` / ``logic_area_scale``.
* SRAM access energy per byte follows a power law in capacity fitted to Horowitz's 64-bit reads
  (8 KiB: 10 pJ, 32 KiB: 20 pJ, 1 MiB: 100 pJ), times ``logic_energy_scale`` at other nodes.
* SRAM area is bit count x bit-cell area / array efficiency (bit cells are node data, not scaled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tech:
    node_nm: float
    mult8_energy_pj: float
    add32_energy_pj: float
    mult8_area_um2: float
    add32_area_um2: float
    dff_area_um2: float
    mux2_area_um2: float
    register_bit_energy_pj: float
    fp32_add_energy_pj: float
    fp32_mult_energy_pj: float
    fp32_add_area_um2: float
    fp32_mult_area_um2: float
    logic_energy_scale: float
    logic_area_scale: float
    sram_energy_pj_per_64b_8kib: float
    sram_energy_size_exponent: float
    sram_write_read_ratio: float
    sram_bitcell_um2: float
    sram_array_efficiency: float
    dram_energy_pj_per_byte: float
    leakage_mw_per_mm2: float
    periphery_area_mm2: float

    def mac_energy_pj(self, bits: np.ndarray, acc_bits: np.ndarray) -> np.ndarray:
        """One b x b multiply plus one accumulate at the accumulator width (arithmetic only; the
        PE's pipeline and accumulator registers are ``register_energy_pj``)."""
        b = np.asarray(bits, dtype=np.float64)
        acc = np.asarray(acc_bits, dtype=np.float64)
        mult = self.mult8_energy_pj * (b / 8.0) ** 2
        add = self.add32_energy_pj * (acc / 32.0)
        return self.logic_energy_scale * (mult + add)

    def pe_area_um2(self, bits: np.ndarray, acc_bits: np.ndarray) -> np.ndarray:
        """Multiplier, accumulator adder, two operand registers and the accumulator register."""
        b = np.asarray(bits, dtype=np.float64)
        acc = np.asarray(acc_bits, dtype=np.float64)
        mult = self.mult8_area_um2 * (b / 8.0) ** 2
        add = self.add32_area_um2 * (acc / 32.0)
        regs = self.dff_area_um2 * (2 * b + acc)
        return self.logic_area_scale * (mult + add + regs)

    def int_add_energy_pj(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_energy_scale * self.add32_energy_pj * np.asarray(bits, dtype=np.float64) / 32.0

    def int_add_area_um2(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_area_scale * self.add32_area_um2 * np.asarray(bits, dtype=np.float64) / 32.0

    def mult_energy_pj(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_energy_scale * self.mult8_energy_pj * (np.asarray(bits, dtype=np.float64) / 8.0) ** 2

    def mult_area_um2(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_area_scale * self.mult8_area_um2 * (np.asarray(bits, dtype=np.float64) / 8.0) ** 2

    def reg_area_um2(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_area_scale * self.dff_area_um2 * np.asarray(bits, dtype=np.float64)

    def mux_area_um2(self, bits: np.ndarray) -> np.ndarray:
        return self.logic_area_scale * self.mux2_area_um2 * np.asarray(bits, dtype=np.float64)

    def register_energy_pj(self, bits: np.ndarray) -> np.ndarray:
        """Clock and data energy of ``bits`` register bits for one clocked cycle."""
        return self.logic_energy_scale * self.register_bit_energy_pj * np.asarray(bits, dtype=np.float64)

    def fp32_op_energy_pj(self) -> float:
        """Mean of an FP32 add and multiply (a vector-unit lane operation)."""
        return self.logic_energy_scale * 0.5 * (self.fp32_add_energy_pj + self.fp32_mult_energy_pj)

    def fp32_lane_area_um2(self) -> float:
        return self.logic_area_scale * (self.fp32_add_area_um2 + self.fp32_mult_area_um2)

    def sram_read_pj_per_byte(self, size_kib: np.ndarray) -> np.ndarray:
        size = np.maximum(np.asarray(size_kib, dtype=np.float64), 1e-9)
        per_access = self.sram_energy_pj_per_64b_8kib * (size / 8.0) ** self.sram_energy_size_exponent
        return self.logic_energy_scale * per_access / 8.0

    def sram_write_pj_per_byte(self, size_kib: np.ndarray) -> np.ndarray:
        return self.sram_write_read_ratio * self.sram_read_pj_per_byte(size_kib)

    def sram_area_mm2(self, size_kib: np.ndarray) -> np.ndarray:
        bits = np.asarray(size_kib, dtype=np.float64) * 8192.0
        return bits * self.sram_bitcell_um2 / self.sram_array_efficiency / 1e6
