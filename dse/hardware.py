"""A design's hardware as data, for the tools hardware teams use next, and the files they read.

A system with a PE array describes one design point as a :class:`Hardware`: its DRAM, global buffers, the
R x C array of PEs (MAC unit, pipeline registers, accumulator) and chip-level logic, each unit with its
per-action energies and its area taken from the technology table (conf/tech) by the same functions the cost
model uses; and the GEMMs of the workload as SCALE-Sim layers on the array each one runs on
(:class:`ArrayView`). From it:

* :func:`timeloop_document`: a Timeloop/Accelergy input in the v0.4 format: the ``architecture`` tree
  (``!Container`` / ``!Component`` nodes: DRAM, buffers, a PE container with a spatial mesh of rows x cols,
  its registers and MAC), plus Accelergy's two tables, ``ERT`` (energy per action, pJ) and ``ART`` (area per
  instance, um^2), filled with TIDE's numbers: Timeloop then costs its mappings with the same energies and
  areas as TIDE, and the ART summed over instances is TIDE's area of the design exactly.
* :func:`scalesim_files`: SCALE-Sim 3 inputs per array view: ``<view>.scalesim.cfg`` (array, buffer sizes,
  dataflow, DRAM bandwidth in words per cycle from the design), ``<view>.topology.csv`` (GEMM mode: M, N, K)
  and the ``<view>.layout.csv`` that SCALE-Sim 3.0.0 always opens.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TIMELOOP_VERSION = "0.4"


@dataclass(frozen=True)
class Unit:
    """One kind of hardware unit: ``instances`` copies, each with ``area_um2`` and energies per action (pJ).
    Storage units also give ``depth`` x ``width`` bits of ``datawidth``-bit words and what they keep."""

    name: str
    klass: str
    instances: int
    area_um2: float
    actions: dict[str, float]
    attributes: dict[str, Any] = field(default_factory=dict)
    keeps: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Layer:
    """One SCALE-Sim GEMM layer: ``op`` is the TIDE operator it is (part of)."""

    name: str
    op: str
    M: int
    N: int
    K: int


@dataclass(frozen=True)
class ArrayView:
    """The array as one group of GEMMs sees it (e.g. Tender's R x C INT4 array, or its R/2 x C/2 ganged INT8
    array), with the operand buffers and DRAM bandwidth of the design."""

    name: str
    rows: int
    cols: int
    dataflow: str
    word_bits: int
    ifmap_kib: int
    filter_kib: int
    ofmap_kib: int
    dram_words_per_cycle: int
    layers: tuple[Layer, ...]
    note: str = ""


@dataclass(frozen=True)
class Hardware:
    """One design point's hardware: chip-level units (DRAM first), the PE units (per PE; ``rows`` x ``cols``
    instances) and the array views of its GEMMs."""

    system: str
    technology: str
    clock_ghz: float
    rows: int
    cols: int
    chip: tuple[Unit, ...]
    pe: tuple[Unit, ...]
    views: tuple[ArrayView, ...]
    notes: tuple[str, ...] = ()

    @property
    def units(self) -> tuple[Unit, ...]:
        return self.chip + self.pe

    def area_mm2(self) -> float:
        """Sum over units of instances x area: TIDE's area of the design."""
        return sum(u.instances * u.area_um2 for u in self.units) / 1e6


# -- units every array design has ------------------------------------------------------------------------------
def sram_unit(tech: Any, name: str, kib: float, word_bits: int, keeps: tuple[str, ...], note: str,
              energy_kib: float | None = None) -> Unit:
    """An SRAM of ``kib`` KiB read and written in ``word_bits`` words (energy per word from the table's
    per-byte law at ``energy_kib``, default the SRAM's own size)."""
    at = kib if energy_kib is None else energy_kib
    per_byte = word_bits / 8
    return Unit(name, "SRAM", 1, float(tech.sram_area_mm2(kib)) * 1e6,
                {"read": float(tech.sram_read_pj_per_byte(at)) * per_byte,
                 "write": float(tech.sram_write_pj_per_byte(at)) * per_byte},
                {"depth": int(kib * 8192 // word_bits), "width": word_bits, "datawidth": word_bits}, keeps, note)


def dram_unit(tech: Any, word_bits: int, bandwidth_gbps: float) -> Unit:
    return Unit("DRAM", "DRAM", 1, 0.0, {"read": tech.dram_energy_pj_per_byte * word_bits / 8,
                                         "write": tech.dram_energy_pj_per_byte * word_bits / 8},
                {"type": "DRAM", "width": word_bits, "datawidth": word_bits, "bandwidth_gbps": bandwidth_gbps},
                ("Inputs", "Weights", "Outputs"), f"off-chip memory, {bandwidth_gbps:g} GB/s, energy per "
                f"{word_bits}-bit word")


def periphery_unit(tech: Any) -> Unit:
    return Unit("periphery", "dummy", 1, tech.periphery_area_mm2 * 1e6, {},
                note="control, DMA and interconnect: a fixed area (tech.periphery_area_mm2), no per-action energy")


def words_per_cycle(bandwidth_gbps: float, clock_ghz: float, word_bits: int) -> int:
    """DRAM bandwidth in operand words per array cycle (SCALE-Sim's ``Bandwidth``), at least 1."""
    return max(1, int(bandwidth_gbps / clock_ghz / (word_bits / 8)))


# -- Timeloop / Accelergy v0.4 --------------------------------------------------------------------------------
class _Tagged(dict):
    """A mapping written with a YAML tag (``!Container``, ``!Component``)."""

    tag = ""


class Container(_Tagged):
    tag = "!Container"


class Component(_Tagged):
    tag = "!Component"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter where PyYAML has it (the same text, ~10x faster), its pure-Python one otherwise."""


def _represent_tagged(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
    return dumper.represent_mapping(data.tag, dict(data))


_Dumper.add_representer(Container, _represent_tagged)
_Dumper.add_representer(Component, _represent_tagged)


class TimeloopLoader(yaml.SafeLoader):
    """Reads the v0.4 tags back as plain mappings with a ``_tag`` key (tests, tools without timeloopfe)."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    return {"_tag": "!" + suffix, **loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


TimeloopLoader.add_multi_constructor("!", _construct_tagged)

TOP = "system"


def _component(u: Unit) -> Component:
    node = Component(name=u.name, **{"class": u.klass})
    if u.attributes:
        node["attributes"] = dict(u.attributes)
    if u.keeps:
        bypass = [d for d in ("Inputs", "Weights", "Outputs") if d not in u.keeps]
        node["constraints"] = {"dataspace": {"keep": list(u.keeps), "bypass": bypass}}
    node["required_actions"] = list(u.actions)
    return node


def _flat_name(u: Unit) -> str:
    """Accelergy's flattened name of a unit: the top container, the unit and its instance range."""
    return f"{TOP}.{u.name}[1..{u.instances}]"


def timeloop_document(hw: Hardware) -> dict[str, Any]:
    """The v0.4 ``architecture`` with Accelergy's ``ERT`` and ``ART`` filled with TIDE's numbers."""
    dram, on_chip = hw.chip[0], hw.chip[1:]
    nodes: list[Any] = [
        Container(name=TOP, attributes={"technology": hw.technology, "global_cycle_seconds": 1e-9 / hw.clock_ghz}),
        _component(dram),
        Container(name="chip"),
        *[_component(u) for u in on_chip],
        Container(name="PE", spatial={"meshX": hw.cols, "meshY": hw.rows}),
        *[_component(u) for u in hw.pe],
    ]
    ert = [{"name": _flat_name(u), "actions": [{"name": a, "arguments": {}, "energy": float(e)}
                                               for a, e in {**u.actions, "leak": 0.0}.items()]} for u in hw.units]
    art = [{"name": _flat_name(u), "area": float(u.area_um2)} for u in hw.units]
    return {
        "architecture": {"version": TIMELOOP_VERSION, "nodes": nodes},
        "ERT": {"version": TIMELOOP_VERSION, "tables": ert},
        "ART": {"version": TIMELOOP_VERSION, "tables": art},
    }


def timeloop_text(hw: Hardware) -> str:
    head = [f"# Timeloop/Accelergy v{TIMELOOP_VERSION} input for TIDE design {hw.system} ({hw.technology}, "
            f"{hw.clock_ghz:g} GHz), written by TIDE.",
            "# ERT: energy per action [pJ] (per word of the unit's datawidth for storage; per MAC for the MAC unit;",
            "# per clocked cycle for pipeline registers). ART: area per instance [um^2]; sum(instances x area) is",
            "# TIDE's area of the design. Leakage is TIDE's per-area density over the run, not per action (leak: 0).",
            "# Units:"]
    head += [f"#   {u.name} x{u.instances}: {u.note}" for u in hw.units if u.note]
    head += [f"# {n}" for n in hw.notes]
    return "\n".join(head) + "\n" + yaml.dump(timeloop_document(hw), Dumper=_Dumper, sort_keys=False, width=120)


# -- SCALE-Sim 3 ---------------------------------------------------------------------------------------------
#: SCALE-Sim 3.0.0's layout header (scalesim/layout_utils.py, write_layout_file)
LAYOUT_HEADER = ("Layer name", "IFMAP Height Intraline Factor", "IFMAP Width Intraline Factor",
                 "Filter Height Intraline Factor", "Filter Width Intraline Factor", "Channel Intraline Factor",
                 "Num Filter Intraline Factor", "IFMAP Height Intraline Order", "IFMAP Width Intraline Order",
                 "Channel Intraline Order", "IFMAP Height Interline Order", "IFMAP Width Interline Order",
                 "Channel Interline Order", "Num Filter Intraline Order", "Channel Intraline Order",
                 "Filter Height Intraline Order", "Filter Width Intraline Order", "Num Filter Interline Order",
                 "Channel Interline Order", "Filter Height Interline Order", "Filter Width Interline Order")
#: a layout row that SCALE-Sim's example layouts use (custom layouts stay off; the file must still exist)
LAYOUT_ROW = "1,1,1,1,1,1,1,2,0,4,5,3,3,0,1,2,7,4,5,6"


def layer_name(op: str) -> str:
    """A SCALE-Sim layer name (letters, digits, '.', '_' and '-': SCALE-Sim splits rows on commas)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", op)


def scalesim_config(view: ArrayView, run_name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser()
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep SCALE-Sim's key case
    cp["general"] = {"run_name": run_name}
    cp["architecture_presets"] = {
        "ArrayHeight": str(view.rows), "ArrayWidth": str(view.cols),
        "IfmapSramSzkB": str(view.ifmap_kib), "FilterSramSzkB": str(view.filter_kib),
        "OfmapSramSzkB": str(view.ofmap_kib), "IfmapOffset": "0", "FilterOffset": "10000000",
        "OfmapOffset": "20000000", "Bandwidth": str(view.dram_words_per_cycle), "Dataflow": view.dataflow,
        "MemoryBanks": "1", "ReadRequestBuffer": "32", "WriteRequestBuffer": "32",
    }
    cp["layout"] = {f"{p}{k}": v for p in ("Ifmap", "Filter") for k, v in
                    (("CustomLayout", "False"), ("SRAMBankBandwidth", "10"), ("SRAMBankNum", "10"),
                     ("SRAMBankPort", "2"))}
    cp["sparsity"] = {"SparsitySupport": "false", "SparseRep": "ellpack_block", "OptimizedMapping": "false",
                      "BlockSize": "8", "RandomNumberGeneratorSeed": "40"}
    # CALC: stall-free compute cycles (what TIDE's array cycles are); USER: SCALE-Sim stalls on `Bandwidth`
    cp["run_presets"] = {"InterfaceBandwidth": "CALC", "UseRamulatorTrace": "False"}
    return cp


def scalesim_files(hw: Hardware, folder: Path) -> list[Path]:
    """Per array view, in ``folder``: ``<view>.scalesim.cfg``, ``<view>.topology.csv`` and ``<view>.layout.csv``
    (SCALE-Sim: ``python -m scalesim.scale -c CFG -t TOPOLOGY -l LAYOUT -i gemm``)."""
    paths = []
    for view in hw.views:
        cfg_path = folder / f"{view.name}.scalesim.cfg"
        with cfg_path.open("w") as fh:
            fh.write(f"# SCALE-Sim 3 config for TIDE design {folder.name}, array view '{view.name}': "
                     f"{view.rows} x {view.cols} {view.dataflow}, {view.word_bits}-bit words. {view.note}\n"
                     f"# Bandwidth: the design's DRAM bandwidth in words per cycle (used when "
                     f"InterfaceBandwidth = USER).\n")
            scalesim_config(view, f"{folder.name}.{view.name}").write(fh)
        topo = folder / f"{view.name}.topology.csv"
        topo.write_text("Layer,M,N,K,\n" + "".join(f"{lay.name},{lay.M},{lay.N},{lay.K},\n" for lay in view.layers))
        layout = folder / f"{view.name}.layout.csv"
        layout.write_text(",".join(LAYOUT_HEADER) + ",\n"
                          + "".join(f"{lay.name},{LAYOUT_ROW},\n" for lay in view.layers))
        paths += [cfg_path, topo, layout]
    return paths
