"""ParEGO: Gaussian-process Bayesian optimisation of several objectives through random scalarisations.

Knowles, "ParEGO: a hybrid algorithm with on-line landscape approximation for expensive multiobjective
optimization problems", IEEE TEVC 10(1), 2006: at each step the objectives (normalised to [0, 1] over the trials
so far) are folded into one by the augmented Tchebycheff function with a weight vector drawn anew,
``f = max_i(w_i y_i) + rho * sum_i w_i y_i`` (rho = 0.05, the paper's value), one GP is fitted to ``f`` and the
point of highest expected improvement is evaluated next. Over many steps the weights cover the simplex and the
proposals spread along the front.

Why not Optuna's ``GPSampler`` (measured on the default Tender space, 200 trials, 3 objectives and 4 constraints,
``benchmarks/bench_gp.py``): it fits one GP per objective and one per constraint (7), optimises log-EHVI, whose
box decomposition grows with the front, and runs an exhaustive discrete local search over every choice of every
categorical knob from 2,048 quasi-random starts, each step a torch call under a device mode; a trial costs tens of
seconds. Here: one GP for the scalarised objective on the feasible trials and one for the largest normalised
constraint violation on all trials (expected improvement times the probability of feasibility, Gardner et al.,
ICML 2014), a Matern-5/2 ARD kernel fitted by type-II maximum likelihood (L-BFGS-B, analytic gradients), and the
acquisition maximised over a seeded random sample of the space plus every one-knob neighbour of the best designs.

Knobs are encoded in [0, 1]: numeric choices by their rank among the sorted choices (an array of 16/32/64/128 is
ordinal), other categorical choices one-hot, integers and floats by their (log) position in the range. A trial's
proposal depends only on the seed, its number and the finished trials, so a resumed study proposes what an
uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize
from scipy.special import log_ndtr, ndtr

RHO = 0.05  # augmented Tchebycheff's linear term (Knowles 2006)
SQRT5 = math.sqrt(5.0)


# -- the encoding of a design point ----------------------------------------------------------------
def _numeric(choices: Sequence[Any]) -> bool:
    return all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)


@dataclass(frozen=True)
class Knob:
    """One parameter's encoding: its columns in the unit cube and the values it may take."""

    name: str
    dist: BaseDistribution

    def values(self) -> list[Any]:
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            return list(range(d.low, d.high + 1, d.step))
        if isinstance(d, FloatDistribution) and d.step is not None:
            n = int(round((d.high - d.low) / d.step))
            return [d.low + i * d.step for i in range(n + 1)]
        return []  # a continuous float: sampled, not listed

    @property
    def width(self) -> int:
        d = self.dist
        return len(d.choices) if isinstance(d, CategoricalDistribution) and not _numeric(d.choices) else 1

    def encode(self, value: Any) -> np.ndarray:
        d = self.dist
        if isinstance(d, CategoricalDistribution):
            if not _numeric(d.choices):
                out = np.zeros(len(d.choices))
                out[d.choices.index(value)] = 1.0
                return out
            ranks = sorted(d.choices)
            return np.array([ranks.index(value) / max(len(ranks) - 1, 1)])
        low, high, v = float(d.low), float(d.high), float(value)
        if d.log:
            low, high, v = math.log(low), math.log(high), math.log(v)
        return np.array([(v - low) / (high - low) if high > low else 0.0])

    def random(self, rng: np.random.Generator, n: int) -> list[Any]:
        values = self.values()
        if values:
            return [values[i] for i in rng.integers(0, len(values), n)]
        d = self.dist
        if d.log:
            return list(np.exp(rng.uniform(math.log(d.low), math.log(d.high), n)))
        return list(rng.uniform(d.low, d.high, n))


def encode(knobs: Sequence[Knob], points: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([np.concatenate([k.encode(p[k.name]) for k in knobs]) for p in points]).reshape(
        len(points), sum(k.width for k in knobs))


# -- the Gaussian process --------------------------------------------------------------------------
def _matern(x1: np.ndarray, x2: np.ndarray, ls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matern-5/2 correlation and the scaled squared differences [n1, n2, d] (for the gradient)."""
    diff2 = ((x1[:, None, :] - x2[None, :, :]) / ls) ** 2
    r = np.sqrt(diff2.sum(-1))
    return (1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-SQRT5 * r), diff2


@dataclass(frozen=True)
class GP:
    """A zero-mean GP on standardised targets: log lengthscales, log signal variance, log noise variance."""

    x: np.ndarray
    alpha: np.ndarray
    chol: tuple[np.ndarray, bool]
    ls: np.ndarray
    signal: float
    mean: float
    scale: float

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation at ``xs``, in the targets' units."""
        k, _ = _matern(xs, self.x, self.ls)
        k *= self.signal
        mu = k @ self.alpha
        v = cho_solve(self.chol, k.T)
        var = np.maximum(self.signal - np.einsum("ij,ji->i", k, v), 1e-12)
        return self.mean + self.scale * mu, self.scale * np.sqrt(var)


#: bounds of the log hyperparameters: lengthscales on the unit cube, signal variance of standardised targets,
#: noise (the objectives are deterministic; a floor keeps the Cholesky factor well conditioned)
BOUNDS = {"ls": (math.log(0.02), math.log(20.0)), "signal": (math.log(0.05), math.log(20.0)),
          "noise": (math.log(1e-6), math.log(0.5))}


def _nll(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Negative log marginal likelihood (plus a weak log-normal prior on the lengthscales) and its gradient."""
    d = x.shape[1]
    ls, signal, noise = np.exp(theta[:d]), math.exp(theta[d]), math.exp(theta[d + 1])
    corr, diff2 = _matern(x, x, ls)
    k = signal * corr + noise * np.eye(len(y))
    try:
        chol = cho_factor(k, lower=True)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve(chol, y)
    logdet = 2.0 * np.log(np.diag(chol[0])).sum()
    value = 0.5 * y @ alpha + 0.5 * logdet + 0.5 * ((theta[:d] - math.log(0.5)) ** 2).sum() / 4.0
    w = cho_solve(chol, np.eye(len(y))) - np.outer(alpha, alpha)
    r = np.sqrt(diff2.sum(-1))
    dk_dr2 = signal * 5.0 / 3.0 * (1.0 + SQRT5 * r) * np.exp(-SQRT5 * r)  # d k / d log ls_j = dk_dr2 * diff2_j
    grad = np.empty_like(theta)
    grad[:d] = 0.5 * np.einsum("ij,ijk->k", w * dk_dr2, diff2) + (theta[:d] - math.log(0.5)) / 4.0
    grad[d] = 0.5 * np.sum(w * (signal * corr))
    grad[d + 1] = 0.5 * np.trace(w) * noise
    return float(value), grad


def fit_gp(x: np.ndarray, y: np.ndarray) -> GP:
    """A GP fitted to ``y`` at ``x`` by type-II maximum likelihood (deterministic: one fixed start)."""
    mean, scale = float(np.mean(y)), float(np.std(y)) or 1.0
    ys = (y - mean) / scale
    d = x.shape[1]
    start = np.array([math.log(0.5)] * d + [0.0, math.log(1e-3)])
    bounds = [BOUNDS["ls"]] * d + [BOUNDS["signal"], BOUNDS["noise"]]
    res = minimize(_nll, start, args=(x, ys), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 100})
    theta = res.x if np.all(np.isfinite(res.x)) else start
    ls, signal, noise = np.exp(theta[:d]), math.exp(theta[d]), math.exp(theta[d + 1])
    k = signal * _matern(x, x, ls)[0] + noise * np.eye(len(ys))
    chol = cho_factor(k + 1e-9 * np.eye(len(ys)), lower=True)
    return GP(x, cho_solve(chol, ys), chol, ls, signal, mean, scale)


def log_expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log EI of minimising, stable where the improvement is far in the tail."""
    z = (best - mu) / sd
    ei = sd * (z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    # far in the tail z Phi(z) + phi(z) ~ phi(z) / z^2 (Mills' ratio)
    tail = np.log(sd) - 0.5 * z * z - 0.5 * math.log(2 * math.pi) - 2.0 * np.log(np.maximum(np.abs(z), 1.0))
    return np.where(ei > 1e-300, np.log(np.maximum(ei, 1e-300)), tail)


# -- the scalarisation -----------------------------------------------------------------------------
def normalised(values: np.ndarray) -> np.ndarray:
    """Each objective (to be minimised) on [0, 1] over the trials, on a log scale when it is positive and spans
    more than a decade (latency and energy do)."""
    v = values.copy()
    for j in range(v.shape[1]):
        col = v[:, j]
        if np.all(col > 0) and col.max() > 10 * col.min():
            col = np.log(col)
        lo, hi = col.min(), col.max()
        v[:, j] = (col - lo) / (hi - lo) if hi > lo else 0.0
    return v


def tchebycheff(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (y * weights).max(1) + RHO * (y * weights).sum(1)


def violation(constraints: np.ndarray) -> np.ndarray:
    """The largest constraint value of each trial, each constraint scaled by its spread (<= 0: feasible)."""
    spread = np.abs(constraints).max(0)
    return (constraints / np.where(spread > 0, spread, 1.0)).max(1)


class ParEGOSampler(optuna.samplers.BaseSampler):
    """ParEGO (see the module): random samples for the first ``n_startup_trials``, then the candidate of highest
    constrained expected improvement of a randomly weighted Tchebycheff scalarisation."""

    def __init__(self, seed: int | None = None, n_startup_trials: int = 10, n_candidates: int = 2048,
                 n_neighbourhoods: int = 5) -> None:
        if n_startup_trials < 2:
            raise ValueError(f"n_startup_trials must be at least 2, got {n_startup_trials}")
        self._seed = 0 if seed is None else int(seed)
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self.n_neighbourhoods = n_neighbourhoods
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._space = optuna.search_space.IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {k: d for k, d in self._space.calculate(study).items() if not d.single()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if all(k in t.params for k in search_space)]
        if len(done) < self.n_startup_trials:
            return {}
        rng = np.random.default_rng([self._seed, trial.number])
        knobs = [Knob(k, search_space[k]) for k in sorted(search_space)]
        return propose(knobs, done, study.directions, rng, self.n_candidates, self.n_neighbourhoods)


def _objectives(done: Sequence[FrozenTrial], directions: Sequence[optuna.study.StudyDirection]) -> np.ndarray:
    sign = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in directions])
    return np.array([t.values for t in done], dtype=np.float64).reshape(len(done), len(directions)) * sign


def propose(knobs: Sequence[Knob], done: Sequence[FrozenTrial], directions: Sequence[optuna.study.StudyDirection],
            rng: np.random.Generator, n_candidates: int, n_neighbourhoods: int) -> dict[str, Any]:
    """The next design point (see :class:`ParEGOSampler`)."""
    values = _objectives(done, directions)
    names = sorted({k for t in done for k in t.constraints})
    cons = np.array([[t.constraints.get(k, 0.0) for k in names] for t in done], dtype=np.float64).reshape(
        len(done), len(names))
    finite = np.all(np.isfinite(values), 1)
    if names:  # a non-finite constraint value: beyond every finite one
        cons = np.where(np.isfinite(cons), cons, np.where(np.isfinite(cons), np.abs(cons), 0.0).max() + 1.0)
    viol = violation(cons) if names else np.zeros(len(done))
    viol = np.where(finite, viol, max(float(viol.max(initial=0.0)), 0.0) + 1.0)  # a non-finite value: infeasible
    feasible = finite & (viol <= 0)
    x = encode(knobs, [t.params for t in done])

    seen = {tuple(t.params[k.name] for k in knobs) for t in done}
    norm = normalised(values[feasible]) if feasible.any() else values[feasible]  # feasible objectives on [0, 1]
    cands = _candidates(knobs, done, feasible, norm, rng, n_candidates, n_neighbourhoods)
    cands = [c for c in cands if tuple(c[k.name] for k in knobs) not in seen] or cands
    xc = encode(knobs, cands)

    score = np.zeros(len(cands))
    if feasible.sum() >= 2:
        weights = rng.dirichlet(np.ones(values.shape[1]))
        f = tchebycheff(norm, weights)
        mu, sd = fit_gp(x[feasible], f).predict(xc)
        score += log_expected_improvement(mu, sd, float(f.min()))
    if not feasible.all() and len(set(np.sign(viol))) > 1:
        mu, sd = fit_gp(x, viol).predict(xc)
        score += log_ndtr(-mu / sd)  # log P(violation <= 0)
    return cands[int(np.argmax(score))]


def _candidates(knobs: Sequence[Knob], done: Sequence[FrozenTrial], feasible: np.ndarray, norm: np.ndarray,
                rng: np.random.Generator, n: int, n_neighbourhoods: int) -> list[dict[str, Any]]:
    """A seeded uniform sample of the space, and every one-knob change of the best feasible trials (best: lowest
    sum of normalised objectives)."""
    columns = {k.name: k.random(rng, n) for k in knobs}
    out = [{k.name: columns[k.name][i] for k in knobs} for i in range(n)]
    idx = np.flatnonzero(feasible)
    if len(idx):
        order = idx[np.argsort(norm.sum(1), kind="stable")][:n_neighbourhoods]
        for i in order:
            base = {k.name: done[i].params[k.name] for k in knobs}
            for k in knobs:
                for v in k.values():
                    if v != base[k.name]:
                        out.append({**base, k.name: v})
    return out
