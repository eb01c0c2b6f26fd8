"""ParEGO (dse/parego.py): the encoding, the GP's likelihood gradient and fit, and the sampler's behaviour on a
constrained two-objective problem with a known front."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from dse.config import compose_raw, to_config
from dse.parego import Knob, ParEGOSampler, _nll, encode, fit_gp, log_expected_improvement, tchebycheff
from dse.samplers import make_sampler

X_VALUES = [i / 20 for i in range(21)]


def test_numeric_choices_are_ranks_and_other_choices_one_hot() -> None:
    arr = Knob("rows", CategoricalDistribution([64, 16, 128, 32]))
    assert arr.width == 1 and arr.encode(16)[0] == 0.0 and arr.encode(32)[0] == pytest.approx(1 / 3)
    assert arr.encode(128)[0] == 1.0
    mode = Knob("mode", CategoricalDistribution(["runtime", "calibrated"]))
    assert mode.width == 2 and list(mode.encode("calibrated")) == [0.0, 1.0]
    buf = Knob("kib", IntDistribution(16, 1024, log=True))
    assert buf.encode(128)[0] == pytest.approx(0.5)
    assert encode([arr, mode, buf], [{"rows": 64, "mode": "runtime", "kib": 16}]).tolist() == [
        [pytest.approx(2 / 3), 1.0, 0.0, 0.0]]
    assert buf.values()[:2] == [16, 17] and Knob("f", FloatDistribution(0, 1)).values() == []


def test_the_likelihood_gradient_is_the_finite_difference() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(15, 3))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    y = (y - y.mean()) / y.std()
    theta = np.array([math.log(0.4), math.log(0.7), math.log(1.3), 0.2, math.log(1e-2)])
    _, grad = _nll(theta, x, y)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        fd = (_nll(theta + step, x, y)[0] - _nll(theta - step, x, y)[0]) / 2e-6
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-6)


def test_the_fitted_gp_interpolates_and_predicts_between_points() -> None:
    x = np.linspace(0, 1, 12)[:, None]
    y = np.sin(6 * x[:, 0])
    gp = fit_gp(x, y)
    mu, sd = gp.predict(x)
    assert np.allclose(mu, y, atol=1e-2) and np.all(sd < 0.05)
    xm = (x[:-1] + x[1:]) / 2
    mu_m, sd_m = gp.predict(xm)
    assert np.allclose(mu_m, np.sin(6 * xm[:, 0]), atol=0.05)
    assert gp.predict(np.array([[3.0]]))[1][0] > 10 * sd.max()  # far from the data: uncertain


def test_expected_improvement_is_finite_and_ordered_deep_in_the_tail() -> None:
    mu = np.array([0.0, 5.0, 50.0, 500.0])
    log_ei = log_expected_improvement(mu, np.ones(4), 0.0)
    assert np.all(np.isfinite(log_ei)) and np.all(np.diff(log_ei) < 0)
    assert log_ei[0] == pytest.approx(math.log(1 / math.sqrt(2 * math.pi)))
    assert tchebycheff(np.array([[0.2, 0.8]]), np.array([0.5, 0.5]))[0] == pytest.approx(0.4 + 0.05 * 0.5)


def _problem(trial: optuna.Trial) -> tuple[float, float]:
    """A discrete constrained bi-objective problem: the front is x1 = 0, f1 = x0 in [0, 0.8] (x0 + x1 <= 0.8)."""
    x0 = trial.suggest_categorical("x0", X_VALUES)
    x1 = trial.suggest_categorical("x1", X_VALUES)
    tag = trial.suggest_categorical("tag", ["a", "b"])
    g = 1.0 + 4.0 * x1 + (0.5 if tag == "b" else 0.0)
    trial.set_constraint("budget", x0 + x1 - 0.8)
    return x0, g * (1.0 - math.sqrt(x0 / g))


def _run(sampler: optuna.samplers.BaseSampler, n: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(_problem, n_trials=n)
    return study


def _hypervolume(study: optuna.Study) -> float:
    """2-D hypervolume of the feasible trials in the box [0, 1] x [0, 4]."""
    pts = sorted((t.values[0], t.values[1]) for t in study.trials
                 if t.state == optuna.trial.TrialState.COMPLETE and all(c <= 0 for c in t.constraints.values()))
    hv, best = 0.0, 4.0
    for i, (f1, f2) in enumerate(pts):
        best = min(best, f2)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else 1.0
        hv += (nxt - f1) * (4.0 - best)
    return hv


def test_parego_finds_more_of_a_known_front_than_random_sampling() -> None:
    n = 40
    parego = [_hypervolume(_run(ParEGOSampler(seed=s, n_startup_trials=8, n_candidates=256), n)) for s in (0, 1)]
    rand = [_hypervolume(_run(optuna.samplers.RandomSampler(seed=s), n)) for s in (0, 1)]
    assert min(parego) > max(rand)
    study = _run(ParEGOSampler(seed=0, n_startup_trials=8, n_candidates=256), n)
    late = study.trials[8:]
    feasible = [t for t in late if all(c <= 0 for c in t.constraints.values())]
    assert len(feasible) >= 0.7 * len(late)  # the feasibility model steers away from the budget's violators
    assert sum(t.params["tag"] == "a" for t in late) >= 0.7 * len(late)  # the one-hot knob is learnt


def test_a_proposal_depends_on_the_seed_and_the_finished_trials_only() -> None:
    first = _run(ParEGOSampler(seed=3, n_startup_trials=6, n_candidates=128), 12)
    again = _run(ParEGOSampler(seed=3, n_startup_trials=6, n_candidates=128), 12)
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    resumed = optuna.create_study(directions=["minimize", "minimize"],
                                  sampler=ParEGOSampler(seed=3, n_startup_trials=6, n_candidates=128))
    resumed.add_trials(first.trials[:9])  # a fresh sampler object on the same history: trial 9 as before
    resumed.optimize(_problem, n_trials=1)
    assert resumed.trials[9].params == first.trials[9].params


def test_an_unconstrained_problem_and_a_maximised_objective() -> None:
    def problem(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        n = trial.suggest_int("n", 1, 64, log=True)
        return x, (1.0 - x) * math.log2(n)  # minimise x, maximise the second: the front has n = 64

    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=ParEGOSampler(seed=0, n_startup_trials=6, n_candidates=256))
    study.optimize(problem, n_trials=24)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert sum(t.params["n"] >= 32 for t in study.trials[6:]) >= 0.6 * 18


def test_parego_is_a_shipped_sampler_of_the_config_tree() -> None:
    cfg = to_config(compose_raw(["search/sampler=parego", "search.sampler.n_candidates=64"]))
    sampler = make_sampler(cfg.search.sampler, 5, cfg.system.space)
    assert isinstance(sampler, ParEGOSampler) and sampler.n_candidates == 64
