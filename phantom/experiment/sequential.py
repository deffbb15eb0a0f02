"""Ratio metrics per arm from per-session sums, CUPED, and always-valid (sequential) intervals.

The unit of randomisation is the session (the service hashes it to an arm), the metrics are
ratios over views (revenue per view, purchases per view), so every estimate here is a ratio of
sums over sessions with the delta method's variance (Deng, Knoblich, Lu 2018):

    r = sum(R) / sum(N),  Var(r) ~ Var(R - r N) / (n mean(N)^2)

CUPED (Deng, Xu, Kohavi, Walker 2013) subtracts theta x (the same ratio of a covariate X fixed
before the experiment); theta minimises the variance of the difference between arms, pooled
over both arms. Everything works from moments (sums of R, N, X and their products), so a daily
readout is O(1) from cumulative sums and the benchmark can read thousands of experiments.

Always-valid intervals: the normal-mixture sequential probability ratio test (mSPRT, Johari,
Pekelis, Walsh 2017). With an estimate D ~ N(delta, V) and a N(0, tau^2) mixture over delta, the
set of delta the test has not rejected at level alpha is

    D +- sqrt( V (V + tau^2) / tau^2 * (-2 log alpha + log((V + tau^2) / V)) )

and it covers delta at every look with probability >= 1 - alpha: the readout can be looked at
every day and stopped whenever it says so, without inflating false positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# order of the moment vector: sums over sessions
FIELDS = ("n", "R", "N", "X", "RR", "NN", "XX", "RN", "RX", "NX")


def moments(r: np.ndarray, n: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """The moment vector (FIELDS) of sessions with value `r`, views `n` and covariate `x`."""
    r, n = np.asarray(r, float), np.asarray(n, float)
    x = np.zeros_like(r) if x is None else np.asarray(x, float)
    return np.array(
        [r.size, r.sum(), n.sum(), x.sum(), r @ r, n @ n, x @ x, r @ n, r @ x, n @ x],
        dtype=float,
    )


def session_moments(r: np.ndarray, n: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-session moment rows (sessions x FIELDS): summed over any subset they give that subset's moments."""
    r, n, x = (np.asarray(a, float) for a in (r, n, x))
    return np.stack([np.ones_like(r), r, n, x, r * r, n * n, x * x, r * n, r * x, n * x], axis=-1)


@dataclass(frozen=True)
class Arm:
    """One arm's ratio, covariate ratio and the (co)variances of their linearised values (per session)."""

    sessions: np.ndarray
    ratio: np.ndarray  # sum(R) / sum(N)
    cov_ratio: np.ndarray  # sum(X) / sum(N)
    mean_n: np.ndarray
    var_r: np.ndarray  # Var(R - ratio N)
    var_x: np.ndarray  # Var(X - cov_ratio N)
    cov_rx: np.ndarray  # Cov(R - ratio N, X - cov_ratio N)


def arm(m: np.ndarray) -> Arm:
    """Ratio statistics of an arm from its moments (last axis = FIELDS; leading axes broadcast, e.g. days)."""
    m = np.asarray(m, float)
    n, R, N, X, RR, NN, XX, RN, RX, NX = (m[..., i] for i in range(len(FIELDS)))
    with np.errstate(divide="ignore", invalid="ignore"):
        r, x, mu = R / N, X / N, N / n
        # population (co)variances of the session sums, with n - 1 in the denominator
        dof = np.maximum(n - 1, 1)
        vR, vN, vX = (RR - R * R / n) / dof, (NN - N * N / n) / dof, (XX - X * X / n) / dof
        cRN, cRX, cNX = (RN - R * N / n) / dof, (RX - R * X / n) / dof, (NX - N * X / n) / dof
    var_r = vR - 2 * r * cRN + r * r * vN
    var_x = vX - 2 * x * cNX + x * x * vN
    cov_rx = cRX - x * cRN - r * cNX + r * x * vN
    return Arm(n, r, x, mu, var_r, var_x, cov_rx)


@dataclass(frozen=True)
class Difference:
    """Treatment minus control of a ratio metric, plain and CUPED-adjusted."""

    control: np.ndarray
    treatment: np.ndarray
    diff: np.ndarray  # plain difference of ratios
    var: np.ndarray  # its delta-method variance
    diff_cuped: np.ndarray
    var_cuped: np.ndarray
    theta: np.ndarray

    @property
    def variance_reduction(self) -> np.ndarray:
        """1 - Var(CUPED) / Var(plain)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 - self.var_cuped / self.var


def difference(control: np.ndarray, treatment: np.ndarray) -> Difference:
    """Treatment - control from the two arms' moments; theta pooled over both arms."""
    c, t = arm(control), arm(treatment)
    with np.errstate(divide="ignore", invalid="ignore"):
        wc, wt = 1.0 / (c.sessions * c.mean_n**2), 1.0 / (t.sessions * t.mean_n**2)
        var = wc * c.var_r + wt * t.var_r
        denom = wc * c.var_x + wt * t.var_x
        theta = np.where(denom > 0, (wc * c.cov_rx + wt * t.cov_rx) / np.where(denom > 0, denom, 1.0), 0.0)
        var_cuped = var - 2 * theta * (wc * c.cov_rx + wt * t.cov_rx) + theta**2 * denom
    diff = t.ratio - c.ratio
    diff_cuped = diff - theta * (t.cov_ratio - c.cov_ratio)
    return Difference(c.ratio, t.ratio, diff, var, diff_cuped, np.maximum(var_cuped, 0.0), theta)


def msprt_radius(var: np.ndarray, tau: np.ndarray | float, alpha: float) -> np.ndarray:
    """Half-width of the always-valid interval of a N(delta, var) estimate under a N(0, tau^2) mixture."""
    var = np.asarray(var, float)
    tau2 = np.asarray(tau, float) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(var * (var + tau2) / tau2 * (-2.0 * np.log(alpha) + np.log((var + tau2) / var)))
    return np.where(var > 0, out, np.inf)


def fixed_radius(var: np.ndarray, alpha: float) -> np.ndarray:
    """Half-width of the ordinary (one look) two-sided interval, for comparison."""
    from scipy.stats import norm

    return norm.ppf(1 - alpha / 2) * np.sqrt(np.asarray(var, float))


def srm_pvalue(counts: np.ndarray, weights: np.ndarray) -> float:
    """Sample ratio mismatch: chi-square p-value of the sessions per arm against the configured weights."""
    from scipy.stats import chisquare

    counts = np.asarray(counts, float)
    weights = np.asarray(weights, float)
    if counts.sum() == 0 or len(counts) < 2:
        return 1.0
    return float(chisquare(counts, counts.sum() * weights / weights.sum()).pvalue)
