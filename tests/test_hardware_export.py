"""Exports to the next tools (dse/hardware.py): Timeloop/Accelergy v0.4 architecture with TIDE's energy and area
tables, SCALE-Sim 3 inputs for systolic and Tender designs, and the per-GEMM agreement the cross-check
(scripts/crosscheck_scalesim.py) measures with SCALE-Sim itself."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from cost_models import systolic
from dse.config import to_config
from dse.export import hardware_files
from dse.hardware import TimeloopLoader
from dse.systems import make_system
from tests.conftest import compose_raw

SYSTEMS = [["system=systolic"], ["system=systolic", "system.hw.dataflow=ws", "system.hw.bits=4"],
           ["system=tender"], ["system=tender", "system.hw.bits=8", "system.hw.chunk=192"],
           ["system=tender", "system.hw.int8_pe=native", "system.hw.quantize_attention=true"],
           ["system=ant"], ["system=olaccel"], ["system=olive"]]


def _system(overrides: list[str]):  # noqa: ANN202
    cfg = to_config(compose_raw(overrides))
    return make_system(cfg), dict(cfg.system.hw)


def _tables(path: Path) -> tuple[dict, dict[str, dict[str, float]], dict[str, float]]:
    doc = yaml.load(path.read_text(), Loader=TimeloopLoader)  # noqa: S506 - a SafeLoader with the v0.4 tags
    ert = {t["name"]: {a["name"]: a["energy"] for a in t["actions"]} for t in doc["ERT"]["tables"]}
    art = {t["name"]: t["area"] for t in doc["ART"]["tables"]}
    return doc, ert, art


def _instances(name: str) -> int:
    return int(re.search(r"\[1\.\.(\d+)\]$", name).group(1))


@pytest.mark.parametrize("overrides", SYSTEMS, ids=lambda o: " ".join(o))
def test_accelergy_area_table_adds_up_to_tides_area(overrides: list[str], tmp_path: Path) -> None:
    system, point = _system(overrides)
    files = hardware_files(system, point, tmp_path / "d")
    doc, ert, art = _tables(files[0])
    assert doc["architecture"]["version"] == "0.4" and doc["ERT"]["version"] == doc["ART"]["version"] == "0.4"
    area = system.evaluate(point).metrics["area_mm2"][0]
    assert sum(_instances(n) * a for n, a in art.items()) / 1e6 == pytest.approx(area, rel=1e-12)
    nodes = doc["architecture"]["nodes"]
    assert [n["_tag"] for n in nodes[:2]] == ["!Container", "!Component"] and nodes[1]["name"] == "DRAM"
    pe = next(n for n in nodes if n["_tag"] == "!Container" and n["name"] == "PE")
    assert pe["spatial"] == {"meshX": point["cols"], "meshY": point["rows"]}
    components = [n["name"] for n in nodes if n["_tag"] == "!Component"]
    assert sorted(f"system.{c}" for c in components) == sorted(n.rsplit("[", 1)[0] for n in ert)
    assert all(_instances(f"{n}") == point["rows"] * point["cols"] for n in ert
               if n.split(".")[1].startswith(("mac", "pipeline_regs", "accumulator")))


def test_accelergy_energy_table_reproduces_the_systolic_energy(tmp_path: Path) -> None:
    """Action counts of the systolic model x the exported ERT = TIDE's dynamic energy, every dataflow."""
    for df in systolic.DATAFLOWS:
        system, point = _system(["system=systolic", f"system.hw.dataflow={df}", "system.hw.bits=4"])
        _, ert, _ = _tables(hardware_files(system, point, tmp_path / df)[0])
        e = {n.split(".")[1].split("[")[0]: acts for n, acts in ert.items()}
        ops, R, C = system.ops, point["rows"], point["cols"]
        b, acc = point["bits"], point["acc_bits"]
        M, K, N, cnt = ops.M, ops.K, ops.N, ops.count
        sram = systolic.sram_accesses(M, K, N, R, C, df)
        dram = systolic.dram_traffic(M, K, N, R, C, df, a_bytes=b / 8, b_bytes=b / 8, c_bytes=b / 8,
                                     psum_bytes=acc / 8, a_buf=point["a_buf_kib"] * 1024,
                                     b_buf=point["b_buf_kib"] * 1024, c_buf=point["c_buf_kib"] * 1024,
                                     double_buffered=True, sram=sram,
                                     max_slice_overhead=point["kslice_max_overhead"])
        macs = M * K * N
        cycles = systolic.gemm_cycles(M, K, N, R, C, df) + systolic.folds(M, K, N, R, C, df) * (
            dram.k_slices - 1) * (R + C - 2)
        rmw = M * N * (dram.k_slices - 1)
        per_gemm = (macs * e["mac"]["compute"] + cycles * R * C * e["pipeline_regs"]["write"]
                    + (macs if df == "os" else 0) * e["accumulator"]["update"]
                    + sram.a_reads * e["A_buffer"]["read"] + sram.b_reads * e["B_buffer"]["read"]
                    + (sram.c_writes + rmw) * e["C_buffer"]["write"] + (sram.c_reads + rmw) * e["C_buffer"]["read"]
                    + dram.a_bytes / (b / 8) * e["A_buffer"]["write"] + dram.b_bytes / (b / 8) * e["B_buffer"]["write"]
                    + dram.total / (b / 8) * e["DRAM"]["read"])
        m = system.evaluate(point).metrics
        assert float((per_gemm * cnt).sum()) * 1e-12 == pytest.approx(
            m["energy_j"][0] - m["energy_leak_j"][0], rel=1e-12), df


def test_tender_energy_table_holds_the_models_per_action_energies(tmp_path: Path) -> None:
    system, point = _system(["system=tender"])
    _, ert, _ = _tables(hardware_files(system, point, tmp_path)[0])
    e = {n.split(".")[1].split("[")[0]: acts for n, acts in ert.items()}
    t, acc, spad = system.tech, point["acc_bits"], point["scratchpad_kib"]
    assert e["mac"]["compute_int4"] == pytest.approx(t.mult_energy_pj(4.0) + t.int_add_energy_pj(acc))
    assert e["mac"]["compute_int8"] == pytest.approx(4 * t.mult_energy_pj(4.0) + 2 * t.int_add_energy_pj(12.0)
                                                     + t.int_add_energy_pj(acc))  # one INT8 MAC of a 2x2 gang
    assert e["pipeline_regs"]["write"] == pytest.approx(t.register_energy_pj(9))  # 2 x 4 bits + rescale signal
    assert e["accumulator"]["shift"] == e["accumulator"]["update"] == pytest.approx(t.register_energy_pj(acc))
    assert e["scratchpad_A"]["read"] == pytest.approx(t.sram_read_pj_per_byte(spad / 2) * 4 / 8)
    assert e["output_buffer"]["write"] == pytest.approx(t.sram_write_pj_per_byte(point["out_buf_kib"]) * acc / 8)
    assert e["DRAM"]["read"] == pytest.approx(t.dram_energy_pj_per_byte / 2)
    assert e["vector_unit"]["compute"] == pytest.approx(t.fp32_op_energy_pj())


def _scalesim(folder: Path) -> dict[str, tuple[configparser.SectionProxy, list[list[str]]]]:
    out = {}
    for cfg_path in sorted(folder.glob("*.scalesim.cfg")):
        view = cfg_path.name.removesuffix(".scalesim.cfg")
        cp = configparser.ConfigParser()
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read(cfg_path)
        rows = [r.split(",") for r in (folder / f"{view}.topology.csv").read_text().splitlines()[1:]]
        assert all(r[-1] == "" for r in rows)  # SCALE-Sim drops the last field: every row ends with a comma
        out[view] = (cp["architecture_presets"], rows)
    return out


@pytest.mark.parametrize("overrides", [o for o in SYSTEMS if "system=tender" in o or "system=systolic" in o],
                         ids=lambda o: " ".join(o))
def test_scalesim_layers_reproduce_tides_stall_free_cycles(overrides: list[str], tmp_path: Path) -> None:
    """SCALE-Sim's closed form (exact against SCALE-Sim 3.0.0: tests/data/scalesim_cycles.csv) over each
    exported layer, summed per GEMM, is TIDE's cycles minus its extra cycles (K-split refills, rescale
    bubbles), less one cycle per extra chunk piece (SCALE-Sim drops one cycle per layer)."""
    system, point = _system([*overrides, "workload.decode_ctx_samples=0", "workload.gen_len=4"])
    hardware_files(system, point, tmp_path)
    views = _scalesim(tmp_path)
    rows = {r["op"]: r for r in system.breakdown(point) if r["kind"] not in ("vector", "leakage")}
    op_of = {layer.name: layer.op for view in system.hardware(point).views for layer in view.layers}
    seen: dict[str, list[float]] = {}
    for arch, layers in views.values():
        R, C, df = int(arch["ArrayHeight"]), int(arch["ArrayWidth"]), arch["Dataflow"]
        assert int(arch["Bandwidth"]) >= 1
        for name, M, N, K, _ in layers:  # the written files, read back
            seen.setdefault(op_of[name], []).append(systolic.gemm_cycles(int(M), int(K), int(N), R, C, df))
    assert set(seen) == set(rows)
    for op, cycles in seen.items():
        r = rows[op]
        tide_stall_free = (r["cycles"] - r["extra_cycles"]) / r["count"]
        assert sum(cycles) == pytest.approx(tide_stall_free - (len(cycles) - 1), abs=1e-6), op
    if "system=tender" in overrides and point.get("bits", 4) == 4 and "native" not in " ".join(overrides):
        assert {v: (int(a["ArrayHeight"]), int(a["ArrayWidth"])) for v, (a, _) in views.items()} == {
            "int4": (64, 64), "int8": (32, 32)}  # attention at INT8 on the ganged half-size array
    assert any(r["extra_cycles"] > 0 for r in rows.values()) or "system=systolic" in overrides


def test_every_search_exports_the_next_tools_inputs(tmp_path: Path) -> None:
    from dse.app import run_search

    run_search(to_config(compose_raw(["system=tender", "search.n_trials=6", "search.progress=false"])), tmp_path)
    designs = sorted((tmp_path / "designs").glob("*.yaml"))
    assert designs
    for d in designs:
        tools = d.with_suffix("")
        assert sorted(p.name for p in tools.iterdir()) == sorted(
            ["timeloop.yaml"] + [f"{v}.{k}" for v in {p.name.split(".")[0] for p in tools.glob("*.scalesim.cfg")}
                                 for k in ("scalesim.cfg", "topology.csv", "layout.csv")])
    assert np.all([yaml.load((d.with_suffix("") / "timeloop.yaml").read_text(), Loader=TimeloopLoader)  # noqa: S506
                   for d in designs])
