"""The agent share of unlabeled traffic without labels: the EM prior correction of Saerens et al. (2002).

A calibrated P(agent) is only right at the agent share it was calibrated at (`prior_train`). When
the share moves, EM re-estimates it from unlabeled scores alone: rescale every posterior to a
candidate prior, take the mean rescaled posterior as the next prior, repeat to a fixed point.
`adjust` gives the probabilities corrected to the estimated prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-6


def adjust(p: Any, prior_train: float, prior_new: float) -> np.ndarray:
    """Posteriors `p` (calibrated at `prior_train`) corrected to the agent share `prior_new` (Bayes' rule)."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    a = prior_new / prior_train
    b = (1 - prior_new) / (1 - prior_train)
    return a * p / (a * p + b * (1 - p))


@dataclass(frozen=True)
class PriorEstimate:
    """The EM estimate of the agent share and how it converged."""

    share: float  # estimated agent share
    naive: float  # mean P(agent) before correction
    iterations: int
    converged: bool


def em_prior(p: Any, prior_train: float, tol: float = 1e-6, max_iter: int = 1000) -> PriorEstimate:
    """Saerens-Latinne-Decaestecker EM: the agent share that makes the rescaled posteriors self-consistent."""
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        return PriorEstimate(float("nan"), float("nan"), 0, False)
    if not 0 < prior_train < 1:
        raise ValueError(f"prior_train must be in (0, 1), got {prior_train}")
    naive = float(p.mean())
    prior = float(np.clip(naive, EPS, 1 - EPS))
    for i in range(1, max_iter + 1):
        new = float(np.clip(adjust(p, prior_train, prior).mean(), EPS, 1 - EPS))
        if abs(new - prior) < tol:
            return PriorEstimate(new, naive, i, True)
        prior = new
    return PriorEstimate(prior, naive, max_iter, False)
