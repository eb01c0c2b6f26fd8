"""The fidelity tables pinned to stored values, the labels of what is fitted, and the calibration fit.

When a model change is intended, regenerate the stored tables and commit them with the change (the
diff is the change's effect on every published comparison point):

    python -m dse.studies.fidelity tender --out tests/data/fidelity
    python -m dse.studies.fidelity infinigen --out tests/data/fidelity

Tolerances: the Tender table is stored at 4 decimals, so values must agree within that rounding
(6e-5); the InfiniGen table is stored at full precision and must agree within 1e-9 relative. Both are far
below any modelling change and far above floating-point noise across machines.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from dse.studies import calibrate
from dse.studies import fidelity as F

STORED = Path(__file__).resolve().parent / "data" / "fidelity"
NUMERIC = ("speedup_vs_ant", "energy_eff_vs_ant", "tokens_per_s", "speedup_vs_flexgen", "transfer_share")


def stored(name: str) -> list[dict[str, str]]:
    with (STORED / name).open() as fh:
        return list(csv.DictReader(fh))


def compare(new: list[dict[str, Any]], old: list[dict[str, str]], close: Any) -> None:
    assert len(new) == len(old)
    for n, o in zip(new, old, strict=True):
        where = f"{o.get('model')} {o.get('experiment', '')} {o.get('batch', '')} {o.get('prompt_len', '')} " \
                f"{o['system']}"
        for key, value in o.items():
            got = n[key]
            if key in NUMERIC and value != "":
                assert close(float(got), float(value)), f"{where}: {key} {got} (stored {value})"
            else:
                assert str(got) == value, f"{where}: {key} {got!r} (stored {value!r})"


@pytest.fixture(scope="module")
def tender_cases() -> list[F.Case]:
    return F.build_cases()


def test_tender_table_is_pinned(tender_cases: list[F.Case]) -> None:
    compare(F.tender_table(tender_cases), stored("tender.csv"), lambda a, b: abs(a - b) <= 6e-5)


def test_infinigen_table_is_pinned() -> None:
    compare(F.infinigen_rows(), stored("infinigen.csv"), lambda a, b: math.isclose(a, b, rel_tol=1e-9))


def test_every_row_says_what_it_is(tender_cases: list[F.Case]) -> None:
    table = F.tender_table(tender_cases)
    ref = F.reference()
    for r in table:
        assert r["speedup_basis"] in F.BASES and r["energy_basis"] in F.BASES
        if r["system"] != "ant":
            assert r["energy_basis"] == "predicted"  # no energy figure is fitted
        fitted = r["speedup_basis"] == "fitted"
        assert fitted == (r["model"] in ref["speedup"] and r["system"] != "ant")  # the OPT rows are the fit targets
        assert bool(r["speedup_fitted_by"]) == fitted
    assert {r["speedup_fitted_by"].split("=")[0] for r in table if r["speedup_fitted_by"]} == {
        f"{s}.{p}" for s, p, _t, _lo, _hi in F.TENDER_FITS}
    infinigen = [r for r in F.infinigen_rows() if r["basis"] == "fitted"]
    assert {r["system"] for r in infinigen} == {"infinigen"}
    assert {(r["batch"], r["prompt_len"] + r["gen_len"]) for r in infinigen} == {(8, 2048)}


def test_bisection_without_a_root_is_an_error() -> None:
    assert calibrate.bisect(lambda x: x - 0.25, 0.0, 1.0) == pytest.approx(0.25, abs=1e-9)
    with pytest.raises(ValueError, match="no root"):
        calibrate.bisect(lambda x: x + 1.0, 0.0, 1.0)


def _labelled(source: str) -> bool:
    text = source.lower()
    return text.startswith("assumption") or "calibrated" in text or text.startswith("estimate")


def test_every_calibrated_constant_and_assumption_states_a_range() -> None:
    """conf/: a mechanism parameter or technology entry whose source is a calibration, an assumption or an
    estimate carries ``range: [low, high]`` next to that source (bools excepted only if they say so)."""
    from dse.studies.sensitivity import tech_ranges  # noqa: F401 - the reader of these ranges

    missing = []
    for system in ("ant", "olaccel", "olive", "tender", "flexgen", "h2o", "int4kv", "infinigen", "systolic",
                   "tender_infinigen"):
        for tech in ("45nm", "7nm"):
            cfg = F.compose_config([f"system={system}", f"tech={tech}"])
            for key, q in cfg.system.mechanism.items():
                if _labelled(str(q.source)) and q.range is None:
                    missing.append(f"{system}.{key}")
            for name in ("register_bit_energy_pj", "sram_write_read_ratio", "sram_array_efficiency",
                         "leakage_mw_per_mm2", "periphery_area_mm2", "logic_energy_scale", "logic_area_scale"):
                q = getattr(cfg.tech, name)
                if _labelled(str(q.source)) and q.range is None:
                    missing.append(f"{tech}.{name}")
    assert not missing, f"no stated range: {sorted(set(missing))}"


def test_sweep_moves_one_parameter_at_a_time() -> None:
    from dse.studies.sensitivity import Uncertain, spans, sweep

    def headlines(mechanism: dict | None = None, **_: object) -> dict[str, float]:
        a = (mechanism or {}).get("x", {}).get("a", 2.0)
        b = (mechanism or {}).get("x", {}).get("b", 1.0)
        return {"h": a * b, "g": 1.0 + b}

    params = [Uncertain("mechanism", "a", 2.0, 1.0, 4.0, "s", ("x",)), Uncertain("mechanism", "b", 1.0, 0.5, 1.5, "s",
                                                                                 ("x",))]
    rows = sweep(params, headlines, lambda h: h["h"] > 1.5)
    got = {(r["parameter"], r["end"], r["headline"]): r["ratio"] for r in rows}
    assert got[("x.a", "low", "h")] == 1.0 and got[("x.a", "high", "h")] == 4.0 and got[("x.a", "low", "g")] == 2.0
    assert got[("x.b", "high", "g")] == 2.5
    assert [r["ranking_holds"] for r in rows if r["parameter"] == "x.a" and r["headline"] == "h"] == [False, True]
    assert spans(rows, "h")[0][0] == "x.a"  # widest first: -50 % / +100 % against -50 % / +50 %


def test_sensitivity_cli_writes_table_and_tornado(tmp_path: Path) -> None:
    assert F.main(["infinigen", "--out", str(tmp_path), "--sensitivity"]) == 0
    rows = list(csv.DictReader((tmp_path / "sensitivity_infinigen.csv").open()))
    params = {r["parameter"] for r in rows}
    assert {"infinigen.gather_gbps", "shared.host_op_s", "hw.pcie_h2d_gbps"} <= params
    nominal = {r["headline"]: float(r["nominal_ratio"]) for r in rows}
    assert nominal["infinigen/flexgen @2048"] == pytest.approx(5.28, rel=1e-3)  # the calibrated point
    low_gather = [r for r in rows if r["parameter"] == "infinigen.gather_gbps" and r["end"] == "low"
                  and r["headline"] == "infinigen/flexgen @2048"]
    assert float(low_gather[0]["ratio"]) < nominal["infinigen/flexgen @2048"]  # a slower gather costs InfiniGen
    assert (tmp_path / "sensitivity_infinigen.png").stat().st_size > 10_000


def test_tender_headlines_follow_a_tech_override(tender_cases: list[F.Case]) -> None:
    headlines = F.tender_headlines(tender_cases)
    nominal = headlines()
    assert nominal["tender/ant speedup"] == pytest.approx(F.tender_geomeans(F.tender_table(tender_cases))[0], rel=1e-9)
    more8 = headlines(mechanism={"ant": {"int8_share": 1.0}})
    assert more8["tender/ant speedup"] > nominal["tender/ant speedup"]
    dear_dram = headlines(tech={"dram_energy_pj_per_byte": 48.0})
    assert dear_dram["tender/ant speedup"] == pytest.approx(nominal["tender/ant speedup"], rel=1e-9)
    assert dear_dram["tender/ant energy eff."] != pytest.approx(nominal["tender/ant energy eff."], rel=1e-6)


def test_model_inputs_replace_the_baselines_defaults(tender_cases: list[F.Case]) -> None:
    """conf/model/*.yaml baseline_inputs: the Llama-2 rows take OLAccel's outlier ratio and ANT's and OliVe's 8-bit
    shares measured on the proxy, the OPT rows the published default (OLAccel) or the fitted value (ANT, OliVe,
    reported as not model-specific)."""
    by = {(r["model"], r["system"], r["parameter"]): r for r in F.baseline_inputs_table(tender_cases)}
    llama, opt = by[("Llama-2-7B", "olaccel", "outlier_ratio")], by[("OPT-6.7B", "olaccel", "outlier_ratio")]
    assert llama["model_specific"] and "measured" in llama["source"] and llama["value"] != opt["value"]
    assert opt["model_specific"] and opt["value"] == 0.03
    schemes = {(c.model, c.system.name): c.system.scheme for c in tender_cases}
    assert schemes[("Llama-2-7B", "olaccel")].outlier_ratio == llama["value"]
    for system in ("ant", "olive"):
        own, fitted = by[("Llama-2-7B", system, "int8_share")], by[("OPT-6.7B", system, "int8_share")]
        assert own["model_specific"] and "measured" in own["source"] and not fitted["model_specific"]
        assert schemes[("Llama-2-7B", system)].int8_share == own["value"] != fitted["value"]


def test_iso_accuracy_ratio_interpolates_log_perplexity() -> None:
    from dse.studies.baseline_inputs import iso_accuracy_ratio

    grid = [(0.01, 40.0), (0.05, 30.0), (0.1, 20.0)]
    assert iso_accuracy_ratio(grid, 50.0) == 0.01  # met at the grid's start
    assert iso_accuracy_ratio(grid, 10.0) == 0.1  # never met: the grid's end
    t = (math.log(30.0) - math.log(25.0)) / (math.log(30.0) - math.log(20.0))
    assert iso_accuracy_ratio(grid, 25.0) == pytest.approx(0.05 + t * 0.05)


def test_baseline_inputs_name_a_known_system() -> None:
    from dse.config import ConfigError, ModelConfig

    good = {"olaccel": {"outlier_ratio": {"value": 0.05, "unit": "x", "source": "test"}}}
    base = dict(name="m", hidden=8, layers=1, heads=1, kv_heads=1, head_dim=8, ffn=8, gated_mlp=False, vocab=8,
                source="test")
    assert ModelConfig(**base, baseline_inputs=good).baseline_inputs["olaccel"]["outlier_ratio"].value == 0.05
    with pytest.raises(ConfigError, match="model.baseline_inputs.*olacel.*olaccel"):
        ModelConfig(**base, baseline_inputs={"olacel": good["olaccel"]})
    with pytest.raises(ConfigError, match="source"):
        ModelConfig(**base, baseline_inputs={"olaccel": {"outlier_ratio": {"value": 0.05, "unit": "x", "source": ""}}})
