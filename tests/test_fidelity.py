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
