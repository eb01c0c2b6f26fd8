"""``python -m dse.studies.fidelity tender --out DIR``: the model against Tender's published ratios.

Workload (stated): batch 1, one 2048-token prefill, no decode (``gen_len = 1``). Tender's accuracy and
performance evaluations process 2048-token sequences, and its ~3x speed-ups over ANT are only possible
where the array is the bottleneck; in bandwidth-bound decode every INT4 design moves the same weight
bytes and the ratios would collapse towards 1. Every system runs the same hardware (64 x 64 4-bit
array, 7 nm, conf/system/base/outlier_array.yaml) at INT4, Tender with each model's published G and
the accumulator widened to the worst case 2b + ceil(log2 K) + G - 1 where 32 bits would overflow.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cost_models import tender as tender_model
from dse.config import CONF_DIR, Config, compose_raw, to_config
from dse.studies.sensitivity import (
    Uncertain,
    hw_ranges,
    mechanism_ranges,
    summary,
    sweep,
    tech_ranges,
    tornado,
    write_csv,
)
from dse.systems.outlier_array import OutlierArraySystem

FIDELITY = CONF_DIR / "fidelity" / "tender.yaml"

#: Calibrated mechanism parameters of the Tender comparison: (system, parameter, the row whose speed-up
#: over ANT it is fitted to on the OPT rows, search range). ``python -m dse.studies.calibrate tender`` fits
#: them in this order; a row that is a fit target is labelled *fitted* in every fidelity output.
TENDER_FITS = (("ant", "int8_share", "tender", 0.0, 1.0), ("olive", "int8_share", "olive", 0.0, 1.0),
               ("olaccel", "outlier_stall_cycles", "olaccel", 0.0, 16.0))
#: What each row of a fidelity table is: *fitted* (a calibrated parameter was fitted to reproduce it),
#: *input* (published data used as a model input), *predicted* (neither), or *reference* (the normaliser).
BASES = ("fitted", "input", "predicted", "reference")
TENDER_INPUTS = ("Tender's G per model (conf/model/*.yaml tender_groups_int4, tender.md)",
                 "the 64x64 4-bit PE array and INT32 output buffer of Tender's MSA (tender.md 7.1)",
                 "the per-action energies and unit areas of conf/tech (each with its source)")


def reference() -> dict[str, Any]:
    return yaml.safe_load(FIDELITY.read_text())


def compose_config(overrides: list[str]) -> Config:
    return to_config(compose_raw(overrides))


@dataclass(frozen=True)
class Row:
    model: str
    system: str
    latency_s: float
    energy_j: float
    groups: int
    acc_bits: int
    side: float


@dataclass(frozen=True)
class Case:
    model: str
    system: OutlierArraySystem
    point: dict[str, Any]
    groups: int
    acc_bits: int
    cfg: Config


def reference_area(tech: dict[str, float] | None = None, hw: dict[str, float] | None = None,
                   tender_sys: OutlierArraySystem | None = None) -> float:
    """The iso-area budget: the PE array of Tender's published MSA (64 x 64 4-bit PEs with the
    mux/shift extension and an INT32 accumulator, tender.md 7.1) in the comparison's technology
    (``tech``/``hw``: values replacing the configured ones; ``tender_sys``: the comparison's Tender system,
    composed here when not given)."""
    if tender_sys is None:
        tender_sys = OutlierArraySystem(compose_config(["system=tender", f"tech={reference()['tech']}"]))
    design = tender_model.TenderDesign.from_mapping({**tender_sys.hw, **(hw or {}), "rows": 64, "cols": 64,
                                                     "acc_bits": 32})
    t = dataclasses.replace(tender_sys.tech, **(tech or {}))
    return float(tender_model.array_area_mm2(t, design, tender_sys.scheme)[0])


def build_cases() -> list[Case]:
    """Every (model, system) of the comparison with its INT4 design point."""
    ref = reference()
    wl = ref["workload"]
    cases = []
    iso_area_side = tender_model.iso_area_side
    budget_mm2 = reference_area()  # every case shares the comparison's technology
    for model in ref["models"]:
        for system in ref["systems"]:
            cfg = compose_config([f"system={system}", f"model={model}", f"tech={ref['tech']}",
                                  f"workload.batch={wl['batch']}", f"workload.prompt_len={wl['prompt_len']}",
                                  f"workload.gen_len={wl['gen_len']}"])
            sys_ = OutlierArraySystem(cfg)
            g = int(cfg.model.tender_groups_int4 or cfg.system.hw["groups"])
            k_max = float(sys_.ops.K.max())
            needed = 2 * 4 + math.ceil(math.log2(k_max)) + (g - 1 if system == "tender" else 0)
            acc = max(int(cfg.system.hw["acc_bits"]), needed)
            point = {**cfg.system.hw, "bits": 4, "groups": g, "acc_bits": acc, "quantize_attention": True,
                     "mode": "calibrated"}  # the paper's hardware: channel order fixed at calibration
            side = iso_area_side(sys_.tech, tender_model.TenderDesign.from_mapping(point), sys_.scheme,
                                 budget_mm2)
            point.update(rows=float(side[0]), cols=float(side[0]))
            cases.append(Case(cfg.model.name, sys_, point, g, acc, cfg))
    return cases


def evaluate_rows(cases: list[Case], mechanism: dict[str, dict[str, float]] | None = None,
                  tech: dict[str, float] | None = None, hw: dict[str, float] | None = None,
                  resize: bool = False) -> list[Row]:
    """Latency and energy of every case; ``mechanism`` replaces scheme parameters per system name, ``tech``
    technology-table entries and ``hw`` hardware defaults. With ``resize`` (or any ``tech``/``hw``, which may
    change the areas) every design is sized again to the iso-area budget of that technology."""
    tender_sys = next((c.system for c in cases if c.system.name == "tender"), None)  # no re-composing
    budget = reference_area(tech, hw, tender_sys) if (resize or tech or hw) else None
    rows = []
    for c in cases:
        scheme = dataclasses.replace(c.system.scheme, **(mechanism or {}).get(c.system.name, {}))
        t = dataclasses.replace(c.system.tech, **(tech or {}))
        point = {**c.point, **(hw or {})}
        if budget is not None:
            side = float(tender_model.iso_area_side(t, tender_model.TenderDesign.from_mapping(point), scheme,
                                                    budget)[0])
            point.update(rows=side, cols=side)
        m = tender_model.evaluate(tender_model.TenderDesign.from_mapping(point), c.system.ops, t, scheme)
        rows.append(Row(c.model, c.system.name, float(m["latency_s"][0]), float(m["energy_j"][0]), c.groups,
                        c.acc_bits, float(point["rows"])))
    return rows


def fitted_values(cases: list[Case]) -> dict[str, str]:
    """target row system -> 'system.parameter=value' of the parameter fitted to that row's speed-up (the system's
    value, ``system.mechanism``: a model's own input, ``model.baseline_inputs``, replaces it on that model's rows
    only)."""
    mechanisms = {c.system.name: c.cfg.system.mechanism for c in cases}
    return {target: f"{system}.{param}={float(mechanisms[system][param].value):.6g}"
            for system, param, target, _lo, _hi in TENDER_FITS if system in mechanisms}


def tender_basis(model: str, system: str, ref: dict[str, Any], fitted: dict[str, str]) -> tuple[str, str, str]:
    """(speed-up basis, the parameter fitted to it or '', energy-efficiency basis) of one row."""
    if system == "ant":
        return "reference", "", "reference"
    if model in ref["speedup"] and system in fitted:
        return "fitted", fitted[system], "predicted"
    return "predicted", "", "predicted"


def ratios(rows: list[Row]) -> dict[tuple[str, str], tuple[float, float]]:
    """(model, system) -> (speed-up over ANT, energy efficiency over ANT)."""
    ant = {r.model: r for r in rows if r.system == "ant"}
    return {(r.model, r.system): (ant[r.model].latency_s / r.latency_s, ant[r.model].energy_j / r.energy_j)
            for r in rows}


THIRD_PARTY_AREA_MM2 = 0.20  # Omni-LUT's Tender-INT8 64x64 array at TSMC 7 nm (tender.md section 9)


def area_report() -> list[str]:
    """The INT8-capable 64 x 64 Tender array at 7 nm against the third-party point, and Tender's PE
    overhead over a plain INT4 PE, from the unit areas of the technology table."""
    cfg = compose_config(["system=tender", "tech=7nm"])
    tender_sys = OutlierArraySystem(cfg)
    plain = tender_model.Scheme(name="plain")
    base = {**cfg.system.hw, "rows": 64, "cols": 64, "acc_bits": 32}
    lines = []
    for pe in ("native", "ganged"):
        d = tender_model.TenderDesign.from_mapping({**base, "int8_pe": pe, "bits": 8})
        area = float(tender_model.array_area_mm2(tender_sys.tech, d, tender_sys.scheme)[0])
        what = "8-bit multiplier PEs (the third party's design)" if pe == "native" else "4-bit PEs, INT8 by 2x2 ganging"
        lines.append(f"64x64 Tender array at 7 nm, {what}: {area:.3f} mm^2 "
                     f"({area / THIRD_PARTY_AREA_MM2 - 1:+.1%} vs the third-party {THIRD_PARTY_AREA_MM2} mm^2)")
    d4 = tender_model.TenderDesign.from_mapping({**base, "int8_pe": "ganged", "bits": 4})
    t_pe = float(tender_model.pe_area_um2(tender_sys.tech, d4, tender_sys.scheme)[0])
    p_pe = float(tender_model.pe_area_um2(tender_sys.tech, d4, plain)[0])
    lines.append(f"Tender PE {t_pe:.2f} um^2 vs plain INT4 PE {p_pe:.2f} um^2 at 7 nm: overhead {t_pe / p_pe - 1:+.1%} "
                 "(accumulator-wide 2:1 mux + 1-bit rescale register; the shift is wiring)")
    return lines


#: The baselines' model-dependent inputs (conf/model/*.yaml baseline_inputs): system -> its parameters
BASELINE_INPUTS = {"ant": ("int8_share",), "olaccel": ("outlier_ratio",), "olive": ("int8_share",)}


def baseline_inputs_table(cases: list[Case]) -> list[dict[str, Any]]:
    """Per model and baseline: each model-dependent input, its value and where it comes from (the model's
    own entry, or the system's value, which is then not model-specific)."""
    rows = []
    for c in cases:
        for param in BASELINE_INPUTS.get(c.system.name, ()):
            own = c.cfg.model.baseline_inputs.get(c.system.name, {}).get(param)
            q = own if own is not None else c.cfg.system.mechanism[param]
            rows.append({"model": c.model, "system": c.system.name, "parameter": param,
                         "value": getattr(c.system.scheme, param), "model_specific": own is not None,
                         "source": str(q.source)})
    return rows


def geomean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


INFINIGEN = CONF_DIR / "fidelity" / "infinigen.yaml"
INFINIGEN_COLUMNS = ["experiment", "model", "batch", "prompt_len", "gen_len", "system", "tokens_per_s",
                     "speedup_vs_flexgen", "basis", "fitted_by", "transfer_share", "transfer_basis",
                     "paper_speedup_vs_flexgen", "paper_transfer_share"]
#: The calibrated parameter of the offloading comparison: ``python -m dse.studies.calibrate infinigen`` fits
#: it to InfiniGen's speed-up over FlexGen at the longest sequence of the seq_len experiment.
INFINIGEN_FIT = ("infinigen", "gather_gbps")
INFINIGEN_INPUTS = ("InfiniGen's selected tokens per context length (Fig. 16a, the k table of "
                    "conf/system/infinigen.yaml)", "the A6000 + PCIe 3.0 platform of the paper (conf/platform)",
                    "OPT-13B shapes")


def infinigen_basis(system: str, config: tuple[int, int], fit_config: tuple[int, int], fitted_by: str
                    ) -> tuple[str, str]:
    """(basis, fitted parameter) of a row's speed-up; ``config`` = (batch, prompt + gen): the fit point's
    configuration is fitted in whichever experiment it recurs."""
    if system == "flexgen":
        return "reference", ""
    if system == INFINIGEN_FIT[0] and config == fit_config:
        return "fitted", fitted_by
    return "predicted", ""


def offload_metrics(system: str, ref: dict[str, Any], batch: int, prompt: int, gen: int) -> dict[str, float]:
    from dse.systems.offload import OffloadSystem

    cfg = compose_config([f"system={system}", f"model={ref['model']}", f"platform@system.hw={ref['platform']}",
                          f"workload.prompt_len={prompt}", f"workload.gen_len={gen}"])
    sys_ = OffloadSystem(cfg)
    m = sys_.evaluate({**cfg.system.hw, "batch": batch}).metrics
    return {k: float(v[0]) for k, v in m.items()}


def infinigen_fitted_value() -> str:
    system, param = INFINIGEN_FIT
    cfg = compose_config([f"system={system}"])
    return f"{system}.{param}={cfg.system.mechanism[param].value:.6g}"


def infinigen_rows() -> list[dict[str, Any]]:
    """The three experiments of infinigen.md section 9 (sequence length, batch, transfer share)."""
    ref = yaml.safe_load(INFINIGEN.read_text())
    rows: list[dict[str, Any]] = []
    model = compose_config([f"model={ref['model']}"]).model.name
    fit_config = (ref["seq_len"]["batch"], ref["seq_len"]["totals"][-1])
    fitted_by = infinigen_fitted_value()

    def block(experiment: str, batch: int, prompt: int, gen: int, paper: dict[str, Any]) -> None:
        res = {s: offload_metrics(s, ref, batch, prompt, gen) for s in ref["systems"]}
        base = res["flexgen"]["tokens_per_s"]
        for s, m in res.items():
            basis, by = infinigen_basis(s, (batch, prompt + gen), fit_config, fitted_by)
            rows.append({"experiment": experiment, "model": model, "batch": batch, "prompt_len": prompt,
                         "gen_len": gen, "system": s, "tokens_per_s": m["tokens_per_s"],
                         "speedup_vs_flexgen": m["tokens_per_s"] / base, "basis": basis, "fitted_by": by,
                         "transfer_share": m["transfer_share"] if experiment == "transfer" else "",
                         "transfer_basis": "predicted" if experiment == "transfer" else "",
                         "paper_speedup_vs_flexgen": paper.get("speedup", {}).get(s, ""),
                         "paper_transfer_share": paper.get("share", {}).get(s, "")})

    sl = ref["seq_len"]
    for i, total in enumerate(sl["totals"]):
        paper = {"speedup": {s: v[i] for s, v in sl["paper_speedup"].items()}}
        block("seq_len", sl["batch"], total - sl["gen_len"], sl["gen_len"], paper)
    bt = ref["batch"]
    for b in bt["batches"]:
        block("batch", b, bt["prompt_len"], bt["gen_len"], {})
    tr = ref["transfer"]
    block("transfer", tr["batch"], tr["prompt_len"], tr["gen_len"], {"share": tr["paper_share"]})
    return rows


def infinigen_main(out: Path) -> int:
    rows = infinigen_rows()
    path = out / "infinigen.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=INFINIGEN_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"fitted parameter (python -m dse.studies.calibrate infinigen): {infinigen_fitted_value()}, to "
          "InfiniGen/FlexGen at the longest sequence of the seq_len experiment")
    print("inputs (published data used as model inputs): " + "; ".join(INFINIGEN_INPUTS))
    print(f"{'experiment':<10}{'batch':>6}{'prompt':>7}{'gen':>5} {'system':<10}{'tok/s':>9}{'x FlexGen':>10}"
          f"{'paper':>7} {'basis':<10}{'transfer':>9}{'paper':>7} {'basis':<10}")
    for r in rows:
        share = f"{r['transfer_share']:.1%}" if r["transfer_share"] != "" else ""
        pshare = f"{r['paper_transfer_share']:.1%}" if r["paper_transfer_share"] != "" else ""
        print(f"{r['experiment']:<10}{r['batch']:>6}{r['prompt_len']:>7}{r['gen_len']:>5} {r['system']:<10}"
              f"{r['tokens_per_s']:>9.2f}{r['speedup_vs_flexgen']:>10.2f}{str(r['paper_speedup_vs_flexgen']):>7}"
              f" {r['basis']:<10}{share:>9}{pshare:>7} {r['transfer_basis']:<10}")
    print(f"wrote {path}")
    return 0


TENDER_COLUMNS = ["model", "system", "speedup_vs_ant", "speedup_basis", "speedup_fitted_by", "energy_eff_vs_ant",
                  "energy_basis", "paper_speedup_vs_ant", "paper_energy_eff_vs_ant", "groups", "acc_bits",
                  "array_side"]


def tender_table(cases: list[Case], mechanism: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One row per (model, system): the ratios over ANT, what each is (fitted/predicted/reference), the paper."""
    ref = reference()
    rows = evaluate_rows(cases, mechanism)
    rat = ratios(rows)
    fitted = fitted_values(cases)
    table = []
    for r in rows:
        s, e = rat[(r.model, r.system)]
        s_basis, fitted_by, e_basis = tender_basis(r.model, r.system, ref, fitted)
        ps = ref["speedup"].get(r.model, {}).get(r.system)
        pe = ref["energy_eff"].get(r.model, {}).get(r.system)
        table.append({"model": r.model, "system": r.system, "speedup_vs_ant": s, "speedup_basis": s_basis,
                      "speedup_fitted_by": fitted_by, "energy_eff_vs_ant": e, "energy_basis": e_basis,
                      "paper_speedup_vs_ant": "" if ps is None else ps,
                      "paper_energy_eff_vs_ant": "" if pe is None else pe,
                      "groups": r.groups if r.system == "tender" else "", "acc_bits": r.acc_bits,
                      "array_side": int(r.side)})
    return table


def tender_geomeans(table: list[dict[str, Any]], basis: str | None = None) -> tuple[float, float]:
    """Geomean speed-up and energy efficiency of Tender over ANT (only rows whose speed-up has ``basis``)."""
    rows = [r for r in table if r["system"] == "tender" and (basis is None or r["speedup_basis"] == basis)]
    return geomean([r["speedup_vs_ant"] for r in rows]), geomean([r["energy_eff_vs_ant"] for r in rows])


def write_tender_csv(table: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=TENDER_COLUMNS)
        writer.writeheader()
        for r in table:
            writer.writerow({**r, "speedup_vs_ant": f"{r['speedup_vs_ant']:.4f}",
                             "energy_eff_vs_ant": f"{r['energy_eff_vs_ant']:.4f}"})


def parse_sweep(text: str) -> tuple[str, str, list[float]]:
    """``system.parameter=v1,v2,...`` -> (system, parameter, values)."""
    try:
        name, values = text.split("=", 1)
        system, param = name.split(".", 1)
        return system, param, [float(v) for v in values.split(",")]
    except ValueError:
        raise SystemExit(f"--sweep: expected system.parameter=v1,v2,..., got {text!r}") from None


def tender_main(out: Path, sweep: str | None = None) -> int:
    ref = reference()
    cases = build_cases()
    table = tender_table(cases)
    path = out / "tender.csv"
    write_tender_csv(table, path)
    with (out / "baseline_inputs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["model", "system", "parameter", "value", "model_specific", "source"])
        writer.writeheader()
        writer.writerows(baseline_inputs_table(cases))
    print(f"workload: batch {ref['workload']['batch']}, prompt {ref['workload']['prompt_len']}, "
          f"generated {ref['workload']['gen_len']} (prefill only), tech {ref['tech']}, INT4")
    print("fitted parameters (python -m dse.studies.calibrate tender), each to one row's speed-up on the OPT "
          "rows:")
    for target, fitted_by in fitted_values(cases).items():
        print(f"  {fitted_by:<34} fitted to {target}/ant")
    print("inputs (published data used as model inputs): " + "; ".join(TENDER_INPUTS))
    print("the baselines' model-dependent inputs (conf/model/*.yaml baseline_inputs; else the system's value):")
    for r in baseline_inputs_table(cases):
        where = r["source"] if r["model_specific"] else "not model-specific: " + r["source"]
        print(f"  {r['model']:<12}{r['system']}.{r['parameter']} = {r['value']:.4g}  [{where[:150]}]")
    print(f"{'model':<12}{'system':<9}{'G':>4}{'acc':>5}{'array':>8}{'speedup':>9}{'paper':>7} {'basis':<10}"
          f"{'energy':>8}{'paper':>7} {'basis':<10}")
    for r in table:
        print(f"{r['model']:<12}{r['system']:<9}{r['groups']:>4}{r['acc_bits']:>5}{r['array_side']:>5}^2 "
              f"{r['speedup_vs_ant']:>9.3f}{r['paper_speedup_vs_ant']:>7} {r['speedup_basis']:<10}"
              f"{r['energy_eff_vs_ant']:>8.3f}{r['paper_energy_eff_vs_ant']:>7} {r['energy_basis']:<10}")
    t_s, t_e = tender_geomeans(table)
    p_s, p_e = tender_geomeans(table, "predicted")
    print(f"geomean Tender over ANT, all six models: speedup {t_s:.3f} (paper {ref['geomean']['speedup']}; "
          f"partly fitted: the OPT rows are the fit target of ant.int8_share), energy efficiency {t_e:.3f} "
          f"(paper {ref['geomean']['energy_eff']}; predicted)")
    print(f"geomean Tender over ANT, predicted rows only (no paper row used): speedup {p_s:.3f}, "
          f"energy efficiency {p_e:.3f}")
    for line in area_report():
        print(line)
    if sweep:
        system, param, values = parse_sweep(sweep)
        print(f"sensitivity to {system}.{param} (other parameters as configured, not refitted):")
        print(f"{param:>14}{'speedup':>9}{'energy':>9}")
        for v in values:
            s, e = tender_geomeans(tender_table(cases, {system: {param: v}}))
            print(f"{v:>14.6g}{s:>9.3f}{e:>9.3f}")
    print(f"wrote {path}")
    return 0


def tender_headlines(cases: list[Case]) -> Callable[..., dict[str, float]]:
    """Headline ratios of the Tender comparison (geomeans over the six models, over ANT) as a function of
    parameter overrides (``mechanism``, ``tech``, ``hw`` as in :func:`evaluate_rows`; designs re-sized)."""
    def headlines(**overrides: Any) -> dict[str, float]:
        rat = ratios(evaluate_rows(cases, resize=True, **overrides))
        out = {}
        for system in ("olaccel", "olive", "tender"):
            vals = [v for (_m, s), v in rat.items() if s == system]
            out[f"{system}/ant speedup"] = geomean([v[0] for v in vals])
            out[f"{system}/ant energy eff."] = geomean([v[1] for v in vals])
        return out
    return headlines


def tender_ranking(h: dict[str, float]) -> tuple[tuple[str, ...], ...]:
    """The order of the four systems by speed-up and by energy efficiency (the paper's: ANT < OLAccel <
    OliVe < Tender in both)."""
    return tuple(tuple(sorted(("ant", "olaccel", "olive", "tender"),
                              key=lambda s, m=m: 1.0 if s == "ant" else h[f"{s}/ant {m}"]))
                 for m in ("speedup", "energy eff."))


def tender_uncertain(cases: list[Case]) -> list[Uncertain]:
    configs = {c.system.name: c.cfg for c in cases if c.model == cases[0].model}
    cfg = cases[0].cfg
    return (mechanism_ranges(configs) + tech_ranges(cfg)
            + hw_ranges("outlier_array", {k: v for k, v in cfg.system.hw.items() if isinstance(v, int | float)}))


#: (headline, system, prompt + generated tokens, batch): each over FlexGen, the last over INT4-KV
INFINIGEN_HEADLINES = (("infinigen/flexgen @2048", "infinigen", 2048, 8),
                       ("infinigen/flexgen @512", "infinigen", 512, 8),
                       ("h2o/flexgen @2048", "h2o", 2048, 8), ("h2o/flexgen @512", "h2o", 512, 8),
                       ("int4kv/flexgen @2048", "int4kv", 2048, 8),
                       ("infinigen/int4kv @2048 b4", "infinigen", 2048, 4))


def infinigen_ranking(h: dict[str, float]) -> tuple[str, ...]:
    """The order of the four systems by throughput at 2048 tokens, batch 8 (the paper's: FlexGen < INT4 <
    H2O < InfiniGen)."""
    return tuple(sorted(("flexgen", "int4kv", "h2o", "infinigen"),
                        key=lambda s: 1.0 if s == "flexgen" else h[f"{s}/flexgen @2048"]))


def infinigen_headlines() -> tuple[Callable[..., dict[str, float]], list[Uncertain]]:
    """Headline ratios of the offloading comparison (OPT-13B, the A6000 platform, 128 generated tokens) as a
    function of overrides (``mechanism``: system -> parameters; ``hw``: platform values), and the parameters
    with stated ranges."""
    from dse.systems.offload import OffloadSystem

    ref = yaml.safe_load(INFINIGEN.read_text())
    gen = ref["seq_len"]["gen_len"]
    built: dict[tuple[str, int], tuple[OffloadSystem, dict[str, Any]]] = {}
    configs: dict[str, Config] = {}
    for system in ref["systems"]:
        for total in (512, 2048):
            cfg = compose_config([f"system={system}", f"model={ref['model']}", f"platform@system.hw={ref['platform']}",
                                  f"workload.prompt_len={total - gen}", f"workload.gen_len={gen}"])
            built[(system, total)] = (OffloadSystem(cfg), dict(cfg.system.hw))
            configs[system] = cfg

    def tps(system: str, total: int, batch: int, mechanism: dict[str, dict[str, float]], hw: dict[str, float]) -> float:
        sys_, point = built[(system, total)]
        one = copy.copy(sys_)
        one.scheme = dataclasses.replace(sys_.scheme, **mechanism.get(system, {}))
        return float(one.evaluate({**point, **hw, "batch": batch}).metrics["tokens_per_s"][0])

    def headlines(mechanism: dict[str, dict[str, float]] | None = None, hw: dict[str, float] | None = None
                  ) -> dict[str, float]:
        mech, over = mechanism or {}, hw or {}
        out = {}
        for name, system, total, batch in INFINIGEN_HEADLINES:
            base = "int4kv" if name.startswith("infinigen/int4kv") else "flexgen"
            out[name] = tps(system, total, batch, mech, over) / tps(base, total, batch, mech, over)
        return out

    nominal = {k: v for k, v in built[("flexgen", 2048)][1].items() if isinstance(v, int | float)}
    return headlines, mechanism_ranges(configs) + hw_ranges(ref["platform"], nominal)


def study_inputs(study: str) -> tuple[Callable[..., dict[str, float]], list[Uncertain], Callable[..., Any], str]:
    """A study's headline function, its parameters with stated ranges, its ranking and its title."""
    if study == "tender":
        cases = build_cases()
        return (tender_headlines(cases), tender_uncertain(cases), tender_ranking,
                "Tender comparison (6 models, INT4, iso-area, 7 nm): geomean ratios over ANT")
    (headlines, params) = infinigen_headlines()
    return (headlines, params, infinigen_ranking,
            "Offloading comparison (OPT-13B, A6000 + PCIe 3.0, +128 tokens): throughput ratios")


def draws_main(study: str, out: Path, n: int, seed: int) -> int:
    """``--draws N``: the headline ratios with every stated range drawn jointly (median, 90 % interval, how often
    the order holds; dse/studies/intervals.py)."""
    from dse.studies import intervals

    headlines, params, ranking, _title = study_inputs(study)
    nominal, order, draws, got, orders = intervals.joint(params, headlines, ranking, n, seed)
    rows = intervals.intervals(nominal, got)
    paths = intervals.write(out, study, params, draws, got, [o == order for o in orders], rows)
    print(f"{study}: {len(params)} parameters with stated ranges, drawn jointly {n} times (seed {seed}; nothing "
          "refitted)")
    for line in intervals.lines(rows, orders, order):
        print(line)
    print(f"wrote {paths[0]} and {paths[1]}")
    return 0


def sensitivity_main(study: str, out: Path) -> int:
    """``--sensitivity``: the headline ratios at both ends of every stated range (table, tornado, summary)."""
    headlines, params, ranking, title = study_inputs(study)
    rows = sweep(params, headlines, ranking)
    write_csv(rows, out / f"sensitivity_{study}.csv")
    tornado(rows, out / f"sensitivity_{study}.png", title)
    print(f"{study}: {len(params)} parameters with stated ranges, each at its low and high end, one at a time "
          "(nothing refitted)")
    print(f"ranking at the configured values: {ranking({r['headline']: r['nominal_ratio'] for r in rows})}")
    for line in summary(rows):
        print(line)
    print(f"wrote {out / f'sensitivity_{study}.csv'} and {out / f'sensitivity_{study}.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what the docs' command test parses every documented command with)."""
    parser = argparse.ArgumentParser(prog="python -m dse.studies.fidelity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["tender", "infinigen"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sweep", help="tender: geomeans over values of one mechanism parameter, e.g. "
                                        "ant.int8_share=0,0.5,0.941359")
    parser.add_argument("--sensitivity", action="store_true",
                        help="the headline ratios at both ends of every stated range (conf/: range next to each "
                             "calibrated constant and labelled assumption): a table and a tornado plot")
    parser.add_argument("--draws", type=int, help="the headline ratios with every stated range drawn jointly this "
                                                 "many times: median, 90 %% interval, how often the order holds")
    parser.add_argument("--seed", type=int, default=0, help="seed of --draws")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.draws is not None:
        if args.draws < 1:
            print(f"configuration error: --draws: must be >= 1, got {args.draws}", file=sys.stderr)
            return 2
        return draws_main(args.study, args.out, args.draws, args.seed)
    if args.sensitivity:
        return sensitivity_main(args.study, args.out)
    if args.study == "infinigen":
        return infinigen_main(args.out)
    return tender_main(args.out, args.sweep)


if __name__ == "__main__":
    sys.exit(main())
