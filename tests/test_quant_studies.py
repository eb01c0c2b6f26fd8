"""The quantisation studies' tables from synthetic rows (the measurements themselves are the real-model tests')."""

from __future__ import annotations

from dse.studies import int4_parts, quant_baselines


def _rows() -> list[dict]:
    rows = [{"proxy": "p", "scheme": "dense", "column": "dense", "bits": 16, "ppl": 10.0, "ppl_increase": 0.0,
             "tokens": "1 x 8", "settings": ""}]
    ppl = {"Tender": 11.0, "OliVe": 12.0, "ANT": 30.0, "per-tensor": 5.0}
    for i, scheme in enumerate(quant_baselines.SCHEMES):
        for k, (column, bits, _extra) in enumerate(quant_baselines.COLUMNS):
            p = ppl.get(scheme.label, 20.0 + i) * 10 ** k
            rows.append({"proxy": "p", "scheme": scheme.label, "column": column, "bits": bits, "ppl": p,
                         "ppl_increase": p - 10, "tokens": "1 x 8", "settings": ""})
    return rows


def test_ranks_only_the_outlier_aware_schemes() -> None:
    place = quant_baselines.ranks(_rows())
    assert place["p", "Tender", "INT8"] == 1 and place["p", "OliVe", "INT4"] == 2
    assert ("p", "per-tensor", "INT8") not in place  # a reference, better than all but not ranked
    ranked = [s for s in quant_baselines.SCHEMES if s.ranked]
    assert sorted(v for (_, _, c), v in place.items() if c == "INT4") == list(range(1, len(ranked) + 1))


def test_table_has_a_row_per_scheme() -> None:
    md = quant_baselines.markdown(_rows())
    assert "### p (dense ppl 10.000, 1 x 8 tokens)" in md
    assert md.count("\n| ") == len(quant_baselines.SCHEMES) + 1
    assert "| Tender | 11.00 | 1.00 | 1 | 110.00 | 100.00 | 1 | 1100.00 | 1090.00 | 1 |" in md


def test_parts_table() -> None:
    rows = []
    for scheme in ("per-tensor", "Tender G8 runtime"):
        for i, operands in enumerate(int4_parts.OPERANDS):
            rows.append({"proxy": "p", "part": "operands", "scheme": scheme, "setting": operands, "bits": 4,
                         "ppl": 11.0 + i, "ppl_increase": 1.0 + i, "dense_ppl": 10.0})
    rows.append({"proxy": "p", "part": "layer", "scheme": "Tender G8 runtime", "setting": "layer 0", "bits": 4,
                 "ppl": 12.5, "ppl_increase": 2.5, "dense_ppl": 10.0})
    md = int4_parts.markdown(rows)
    assert "| Tender G8 runtime | 1.00 | 2.00 | 3.00 |" in md
    assert "| layer 0 | Tender G8 runtime INT4 | 2.50 |" in md


def test_write_table_writes_csv_and_markdown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv

    rows = _rows()
    quant_baselines.write_table(tmp_path, "t", rows, quant_baselines.markdown(rows))
    with (tmp_path / "t.csv").open() as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(rows) and back[1]["scheme"] == rows[1]["scheme"]
    assert (tmp_path / "t.md").read_text().startswith("### p")


def test_iso_area_front_is_the_two_objective_front_within_the_budget() -> None:
    from dse.studies import baseline_fronts as bf

    rows = [{bf.X: lat, bf.Y: ppl, bf.AREA: area, bf.ENERGY: 1.0}
            for lat, ppl, area in [(1.0, 9.0, 1.0), (2.0, 3.0, 1.5), (2.0, 3.0, 1.8), (3.0, 4.0, 1.0),
                                   (0.5, 1.0, 10.0), (4.0, 0.5, 1.9)]]
    front = bf.iso_area_front(rows, 2.0)
    assert [(r[bf.X], r[bf.Y]) for r in front] == [(1.0, 9.0), (2.0, 3.0), (4.0, 0.5)]
    assert [(r[bf.X], r[bf.Y]) for r in bf.iso_area_front(rows, 20.0)] == [(0.5, 1.0), (4.0, 0.5)]
    assert bf.iso_area_front(rows, 0.5) == []


def test_share_scan_stops_at_the_first_share_within_the_bound() -> None:
    from dse.studies import baseline_inputs as bi

    asked: list[float] = []

    def ppl(share: float) -> float:
        asked.append(share)
        return 100.0 * (1 - share) + 20.0

    grid = bi.share_scan(ppl, target=60.0)
    assert [s for s, _ in grid] == [0.0, 0.1, 0.25, 0.5, 0.75] and asked[0] == 1.0
    assert bi.iso_accuracy_ratio(grid, 60.0) > 0.5
    assert [s for s, _ in bi.share_scan(ppl, target=10.0)] == [0.0, 0.5, 1.0]  # missed even at 1: the ends


def test_refine_returns_the_smallest_measured_setting_within_the_bound() -> None:
    import math

    from dse.studies import baseline_inputs as bi

    def ppl(r: float) -> float:
        return 20.0 + 80.0 * math.exp(-30 * r)  # falls with the setting, not log-linear between grid points

    grid = [(r, ppl(r)) for r in (0.0, 0.05, 0.1, 0.2)]
    value, measured, met = bi.refine(ppl, grid, 28.0)
    assert met and ppl(value) <= 28.0 and (value, ppl(value)) in measured
    assert 0.05 < value < 0.1 and len(measured) == len(grid) + bi.REFINE_STEPS
    assert value < 0.1 - 0.01  # closer to the root (0.0768) than the grid point that first met it
    assert bi.refine(ppl, grid, 500.0)[0::2] == (0.0, True)  # met at the grid's start: nothing more measured
    assert bi.refine(ppl, grid, 10.0)[0::2] == (0.2, False)  # never met: the grid's end
