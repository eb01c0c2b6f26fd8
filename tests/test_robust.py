"""The joint Monte Carlo (dse/robust): draws, probabilities, the robust front of a real run."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from dse.robust.montecarlo import Job, attainment, draw_front, tally
from dse.robust.ranges import configured, draw, quantile, run_ranges
from dse.uncertainty import Uncertain

MIN2 = ["minimize", "minimize"]


def _u(key: str, lo: float, hi: float, nominal: float | None = None, **kw: object) -> Uncertain:
    return Uncertain("tech", key, lo if nominal is None else nominal, lo, hi, "test", **kw)  # type: ignore[arg-type]


def test_draws_are_reproducible_by_seed_and_inside_their_ranges() -> None:
    params = [_u("a", 1.0, 2.0), _u("b", 3.0, 30.0, dist="loguniform"), _u("c", 0.0, 1.0, 0.8, dist="triangular")]
    one, two, other = draw(params, 500, 7), draw(params, 500, 7), draw(params, 500, 8)
    assert np.array_equal(one, two) and not np.array_equal(one, other)
    for j, p in enumerate(params):
        assert p.low <= one[:, j].min() and one[:, j].max() <= p.high
    assert abs(np.median(np.log(one[:, 1])) - np.log(np.sqrt(90.0))) < 0.15  # loguniform: median at the geometric mean
    assert abs(np.median(one[:, 2]) - 0.6325) < 0.05  # triangular(0, 0.8, 1): median sqrt(0.4)


def test_inputs_that_move_together_share_one_quantile() -> None:
    params = [_u("a", 1.0, 2.0, moves_with="node"), _u("b", 10.0, 30.0, moves_with="node"), _u("c", 0.0, 1.0)]
    d = draw(params, 200, 0)
    assert np.allclose((d[:, 0] - 1.0) / 1.0, (d[:, 1] - 10.0) / 20.0)
    assert abs(np.corrcoef(d[:, 0], d[:, 2])[0, 1]) < 0.3


def test_quantile_of_a_zero_width_range_is_its_value() -> None:
    assert np.all(quantile(_u("a", 2.0, 2.0), np.linspace(0, 1, 5)) == 2.0)


def test_an_order_that_flips_in_half_the_range_gives_p_one_half() -> None:
    """Design A costs (x, 1), design B (0.5, 1): x uniform on [0, 1], so A is on the front (alone or tied) exactly when
    x <= 0.5, B when x >= 0.5; a third design is always dominated."""
    p = [_u("x", 0.0, 1.0)]
    draws = draw(p, 4000, 3)

    def evaluate(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[row[0], 1.0], [0.5, 1.0], [2.0, 2.0]]), np.ones(3, dtype=bool)

    t = tally(evaluate, draws, 3, MIN2, (0, 1))
    share = t.pareto / t.draws
    assert abs(share[0] - 0.5) < 3 * np.sqrt(0.25 / 4000) and abs(share[1] - 0.5) < 3 * np.sqrt(0.25 / 4000)
    assert share[2] == 0 and np.all(t.feasible == 4000)


def test_feasibility_counts_and_only_feasible_designs_make_a_front() -> None:
    draws = draw([_u("x", 0.0, 1.0)], 1000, 1)

    def evaluate(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([row[0] < 0.25, True])

    t = tally(evaluate, draws, 2, MIN2, (0, 1))
    assert abs(t.feasible[0] / 1000 - 0.25) < 0.05 and t.feasible[1] == 1000
    assert t.pareto[0] == t.feasible[0] and t.pareto[1] == 1000 - t.feasible[0]


def test_attainment_surfaces_of_identical_fronts_are_that_front() -> None:
    front = np.array([[1.0, 3.0], [2.0, 1.0]])
    surf = attainment([front, front, front], [50.0, 100.0])
    for level in (50.0, 100.0):
        assert np.array_equal(surf[surf[:, 2] == level][:, :2], front)


def test_the_front_by_blocks_is_the_front() -> None:
    """Blocks that share an objective (the measured accuracy) are filtered on their own first: the same front."""
    rng = np.random.default_rng(0)
    blocks = [np.column_stack([rng.random((n, 2)), np.full(n, level)]) for n, level in ((300, 0.5), (200, 0.1),
                                                                                       (250, 0.5), (1, 0.9))]
    v = np.vstack(blocks)
    v[5] = v[4]  # a tie
    feasible = rng.random(len(v)) < 0.9
    edges = [0, *np.cumsum([len(b) for b in blocks]).tolist()]
    dirs = ["minimize", "maximize", "minimize"]
    assert np.array_equal(np.sort(draw_front(v, feasible, dirs, edges)), np.sort(draw_front(v, feasible, dirs)))


def test_the_staircase_of_an_attainment_surface() -> None:
    from dse.robust.montecarlo import staircase

    xs, ys = staircase(np.array([[2.0, 1.0], [1.0, 3.0]]), (5.0, 4.0))
    assert list(zip(xs, ys, strict=True)) == [(1.0, 4.0), (1.0, 3.0), (2.0, 3.0), (2.0, 1.0), (5.0, 1.0)]


def test_draw_front_keeps_ties_and_drops_dominated() -> None:
    v = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [0.5, 3.0]])
    assert list(draw_front(v, np.array([True, True, True, True]), MIN2)) == [0, 1, 3]
    assert list(draw_front(v, np.array([False, False, True, False]), MIN2)) == [2]


@pytest.fixture(scope="module")
def cost_only_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sampled Tender search without accuracy (cost model only), as a user would run it."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("robust") / "run"
    subprocess.run([sys.executable, "-m", "dse", "accuracy.objective=none", "search.n_trials=40",
                    f"hydra.run.dir={out}", "search.progress=false"], check=True, capture_output=True)
    return out


def test_zero_width_ranges_give_the_plain_front(cost_only_run: Path) -> None:
    from dse.robust.candidates import load_run
    from dse.robust.montecarlo import run_draws

    run = load_run(cost_only_run, progress=False)
    params = tuple(dataclasses.replace(p, low=p.nominal, high=p.nominal) for p in run_ranges(run.cfg))
    assert params, "the run has inputs with stated ranges"
    job = Job(run.cfg, params, run.blocks, dict(run.problem.objectives), dict(run.problem.constraints))
    t = run_draws(job, draw(params, 6, 0), (0, 1), workers=2, progress=False)
    share = t.pareto / t.draws
    assert set(np.unique(share)) <= {0.0, 1.0} and np.all(t.feasible == t.draws)
    plain = np.zeros(job.n, dtype=bool)
    plain[draw_front(run.nominal, np.ones(job.n, dtype=bool), list(run.problem.objectives.values()))] = True
    assert np.array_equal(share == 1.0, plain)
    with (cost_only_run / "pareto.csv").open() as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == int(plain.sum())


def test_designs_within_the_slack_compete_only_where_a_draw_makes_them_feasible(cost_only_run: Path) -> None:
    from dse.robust.candidates import load_run
    from dse.robust.montecarlo import run_draws

    tight, loose = load_run(cost_only_run, progress=False), load_run(cost_only_run, progress=False, slack=1.0)
    assert tight.feasible.all() and loose.feasible.sum() == len(tight.feasible) and not loose.feasible.all()
    params = tuple(dataclasses.replace(p, low=p.nominal, high=p.nominal) for p in run_ranges(loose.cfg))
    job = Job(loose.cfg, params, loose.blocks, dict(loose.problem.objectives), dict(loose.problem.constraints))
    t = run_draws(job, draw(params, 3, 0), (0, 1), workers=1, progress=False)
    assert np.all(t.feasible[~loose.feasible] == 0) and np.all(t.pareto[~loose.feasible] == 0)
    assert t.pareto.sum() == 3 * sum(1 for _ in csv.DictReader((cost_only_run / "pareto.csv").open()))
    # the draw with the least area and power (every energy, leakage and periphery at its low end, the SRAM array
    # efficiency at its high end): more candidates meet the bounds there than as configured
    ranges = run_ranges(loose.cfg)
    least = np.array([p.high if p.key == "sram_array_efficiency" else p.low for p in ranges])
    job = Job(loose.cfg, tuple(ranges), loose.blocks, dict(loose.problem.objectives), dict(loose.problem.constraints))
    assert job.evaluate(least)[1].sum() > loose.feasible.sum()


def test_configured_moves_only_the_drawn_inputs(cost_only_run: Path) -> None:
    from dse.run_config import read_config

    cfg = read_config(cost_only_run)
    params = run_ranges(cfg)
    assert not {p.key for p in params if p.kind == "hw"} & set(cfg.system.space)  # searched knobs are decisions
    moved = configured(cfg, params, [p.high for p in params])
    for p in params:
        got = getattr(moved.tech, p.key).value if p.kind == "tech" else moved.system.hw[p.key]
        assert got == p.high
    assert moved.model == cfg.model and moved.system.space == cfg.system.space


def test_the_command_writes_the_robust_front(cost_only_run: Path) -> None:
    from dse.robust.__main__ import main

    assert main([str(cost_only_run), "--draws", "40", "--workers", "1", "--no-progress"]) == 0
    record = json.loads((cost_only_run / "robust.json").read_text())
    with (cost_only_run / "robust.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert record["candidates"] == len(rows) and record["draws"] == 40
    for r in rows:
        assert 0.0 <= float(r["p_pareto"]) <= float(r["p_feasible"]) <= 1.0
        assert float(r["energy_j.p5"]) <= float(r["energy_j.p50"]) <= float(r["energy_j.p95"])
    front = [r for r in rows if float(r["p_pareto"]) >= 0.5]
    assert len(list((cost_only_run / "robust_designs").glob("*.yaml"))) == len(front) == record["robust_front"]
    assert (cost_only_run / "attainment.png").stat().st_size > 0


def test_the_benchmark_prints_its_ratio(cost_only_run: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_robust.py"), str(cost_only_run),
                           "--draws", "4"], capture_output=True, text=True, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio to one draw" in proc.stdout and "1,000 draws at this rate" in proc.stdout


def test_prepared_evaluation_is_the_evaluation() -> None:
    """System.evaluate_prepared (the Tender model's reused grouping and partly reused latencies) gives exactly what
    System.evaluate gives, draw after draw, invalid points included."""
    from dse.config import compose_raw, to_config
    from dse.space import grid_space
    from dse.systems import make_system

    cfg = to_config(compose_raw(["tech=7nm"]))
    grid = grid_space(dict(cfg.system.space))
    rng = np.random.default_rng(1)
    n = 3000
    params = {k: np.asarray(v)[rng.integers(0, len(v), n)] for k, v in grid.items()}
    params["rows"][:10] = 1  # invalid: array smaller than 2 x 2
    system = make_system(cfg)
    prepared = system.prepare(system.complete(params))
    ranges = run_ranges(cfg)
    for row in draw(ranges, 4, 2):
        drawn = make_system(configured(cfg, ranges, row))
        hw = {p.key: float(v) for p, v in zip(ranges, row, strict=True) if p.kind == "hw"}
        fast = drawn.evaluate_prepared(prepared, hw)
        plain = drawn.evaluate({**drawn.complete(params), **{k: np.full(n, v) for k, v in hw.items()}})
        assert list(fast.invalid) == list(plain.invalid)
        for k, v in plain.metrics.items():
            np.testing.assert_array_equal(fast.metrics[k], v, err_msg=k)


def test_headline_intervals_and_how_often_the_order_holds() -> None:
    from dse.studies import intervals

    p = [Uncertain("mechanism", "x", 0.5, 0.0, 1.0, "test", ("a",))]

    def headlines(mechanism: dict | None = None) -> dict[str, float]:
        x = (mechanism or {}).get("a", {}).get("x", 0.5)
        return {"a/b": 0.5 + x}  # a beats b (ratio > 1) when x > 0.5

    def ranking(h: dict[str, float]) -> tuple[str, ...]:
        return ("b", "a") if h["a/b"] > 1 else ("a", "b")

    nominal, order, draws, got, orders = intervals.joint(p, headlines, ranking, 2000, 0, progress=False)
    assert order == ("a", "b") and nominal == {"a/b": 1.0}
    row = intervals.intervals(nominal, got)[0]
    assert abs(row["median"] - 1.0) < 0.05 and abs(row["p5"] - 0.55) < 0.03 and abs(row["p95"] - 1.45) < 0.03
    held = np.mean([o == order for o in orders])
    assert abs(held - 0.5) < 3 * np.sqrt(0.25 / 2000)
    again = intervals.joint(p, headlines, ranking, 2000, 0, progress=False)[3]
    assert again == got


def test_the_fidelity_draws_command(tmp_path: Path) -> None:
    from dse.studies.fidelity import main

    assert main(["infinigen", "--out", str(tmp_path), "--draws", "25"]) == 0
    with (tmp_path / "intervals_infinigen.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(float(r["p5"]) <= float(r["median"]) <= float(r["p95"]) for r in rows)
    with (tmp_path / "draws_infinigen.csv").open() as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 25
