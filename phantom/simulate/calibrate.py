"""Fit the simulator's free parameters from what a shop logs, never from the ground truth.

- arrival rate by hour: session starts per hour of day (ingested events, via the session table);
- agent share: verified labels where a session has one, the agent detector's calibrated
  P(agent) where it has none;
- agent family mix: the sizes of the known agent harness cohorts (`xp_agent_<family>`);
- price sensitivity of people and of agents: the randomised-price experiment (each session saw
  list x U(0.7, 1.5)) on the labeled cohorts (`xp_human_only`, `xp_agent_<family>`): a logit
  slope per cohort, pooled by inverse variance. Spread of willingness to pay inside a cohort
  still flattens a logit slope a little (measured in docs/simulate.md); a latent-class logit
  that tried to absorb it overshot the agents' slope by 14 % on the default data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.simulate.env import World
from phantom.simulate.population import Mix

MS_PER_HOUR = 3_600_000
HUMAN_COHORT = "xp_human_only"
AGENT_COHORT_PREFIX = "xp_agent_"


def arrival_profile(start_ms: pd.Series) -> tuple[float, np.ndarray]:
    """(mean sessions per hour, relative rate by hour of day (24,), mean 1) from session start times."""
    start = pd.to_datetime(np.asarray(start_ms, dtype=np.int64), unit="ms", utc=True)
    if len(start) == 0:
        raise ValueError("no sessions to fit arrival rates on")
    hours = (start.max() - start.min()).total_seconds() / 3600
    days = max(round(hours / 24), 1)
    counts = np.bincount(start.hour, minlength=24).astype(float) / days
    mean = float(counts.mean())
    return mean, counts / mean


def family_mix(experiment_id: pd.Series) -> dict[str, float]:
    """Share of each agent family among the agent harness cohorts."""
    xp = experiment_id.dropna().astype(str)
    fam = xp[xp.str.startswith(AGENT_COHORT_PREFIX)].str.removeprefix(AGENT_COHORT_PREFIX)
    if fam.empty:
        raise ValueError(f"no {AGENT_COHORT_PREFIX}* cohorts to fit the family mix on")
    counts = fam.value_counts()
    return (counts / counts.sum()).astype(float).to_dict()


def agent_share(labeled: np.ndarray, is_agent: np.ndarray, p_agent: np.ndarray) -> float:
    """Mean of the verified label where there is one, else the detector's calibrated P(agent)."""
    labeled = np.asarray(labeled, dtype=bool)
    label = np.asarray(pd.Series(is_agent).fillna(0).to_numpy(dtype=float))
    return float(np.where(labeled, label, np.asarray(p_agent, dtype=float)).mean())


def cohort_sensitivity(ratio: np.ndarray, bought: np.ndarray, cohort: np.ndarray) -> dict[str, Any]:
    """A logit slope per cohort, pooled by inverse variance: {'sensitivity', 'per_cohort'}.

    Each agent harness cohort is one family, so its slope is not flattened by mixing families
    that buy at very different levels; families that almost never buy get almost no weight.
    """
    r, y, cohort = (np.asarray(x) for x in (ratio, bought, cohort))
    per, weights = {}, []
    for name in sorted(set(cohort.tolist())):
        m = cohort == name
        if m.sum() < 50 or y[m].sum() < 5:
            continue
        fit = logit_slope(r[m], y[m].astype(float))
        per[str(name)] = fit
        weights.append((fit["sensitivity"], 1.0 / fit["se"] ** 2))
    if not weights:
        raise ValueError("no cohort has enough randomised decisions and purchases to fit a price slope")
    s, w = np.array(weights).T
    return {"sensitivity": float(np.sum(s * w) / np.sum(w)), "per_cohort": per}


def logit_slope(r: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Maximum-likelihood logit P(buy) = sigmoid(a - s r): slope s, its standard error, level a."""
    from scipy.optimize import minimize
    from scipy.special import expit

    x = np.column_stack([np.ones_like(r), -r])

    def nll(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta
        p = expit(z)
        ll = y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
        return float(ll.sum()), x.T @ (p - y)

    beta = minimize(nll, np.array([-2.0, 1.0]), jac=True, method="BFGS").x
    p = expit(x @ beta)
    cov = np.linalg.inv((x * (p * (1 - p))[:, None]).T @ x)
    return {"sensitivity": float(beta[1]), "se": float(np.sqrt(cov[1, 1])), "level": float(beta[0]), "n": int(r.size)}


DECISION_COLUMNS = ["cohort", "price_ratio", "purchased_this_product"]  # cohort: the shop's table, joined by features


def calibrate(sessions: pd.DataFrame, decisions: pd.DataFrame, p_agent: np.ndarray) -> dict[str, Any]:
    """Every free parameter from the session table, the decisions and the detector's P(agent)."""
    rate, profile = arrival_profile(sessions["start_ms"])
    xp = decisions["cohort"].astype("string").fillna("")  # the shop's assignment, never the client's claim
    human = (xp == HUMAN_COHORT).to_numpy()
    agent = xp.str.startswith(AGENT_COHORT_PREFIX).to_numpy()
    y = decisions["purchased_this_product"].to_numpy(dtype=float)
    r = decisions["price_ratio"].to_numpy(dtype=float)
    people = cohort_sensitivity(r[human], y[human], xp.to_numpy()[human])
    agents = cohort_sensitivity(r[agent], y[agent], xp.to_numpy()[agent])
    return {
        "sessions_per_hour": rate,
        "hour_profile": profile.tolist(),
        "agent_share": agent_share(sessions["labeled"], sessions["is_agent"], p_agent),
        "agents": family_mix(sessions["cohort"]),
        "human_sensitivity": people["sensitivity"],
        "agent_sensitivity": agents["sensitivity"],
        "fits": {"people": people["per_cohort"], "agents": agents["per_cohort"]},
    }


def calibrated_world(fitted: Mapping[str, Any], template: World) -> World:
    """`template` with the fitted parameters (people's kind mix is latent: it stays the template's)."""
    mix = Mix(float(fitted["agent_share"]), dict(template.mix.humans), dict(fitted["agents"]))
    return replace(
        template,
        sessions_per_hour=float(fitted["sessions_per_hour"]),
        mix=mix,
        human_sensitivity=float(fitted["human_sensitivity"]),
        agent_sensitivity=float(fitted["agent_sensitivity"]),
        hour_profile=tuple(float(x) for x in fitted["hour_profile"]),
    )


def errors(fitted: Mapping[str, Any], world: World) -> dict[str, dict[str, float]]:
    """Fitted vs true value and relative error per parameter (the family mix per family)."""
    true = {
        "sessions_per_hour": world.sessions_per_hour,
        "agent_share": world.mix.agent_share,
        "human_sensitivity": world.human_sensitivity,
        "agent_sensitivity": world.agent_sensitivity,
    }
    total = sum(world.mix.agents.values())
    true.update({f"family_{k}": v / total for k, v in world.mix.agents.items()})
    got = {k: float(fitted[k]) for k in ("sessions_per_hour", "agent_share", "human_sensitivity", "agent_sensitivity")}
    got.update({f"family_{k}": float(fitted["agents"].get(k, 0.0)) for k in world.mix.agents})
    rates = world.hour_rates()
    true_profile = sum(rates.values())
    true_profile = true_profile / true_profile.mean()
    out = {k: {"fitted": got[k], "true": v, "rel_error": abs(got[k] - v) / abs(v)} for k, v in true.items()}
    prof_err = np.abs(np.asarray(fitted["hour_profile"]) - true_profile) / true_profile
    out["hour_profile"] = {"fitted": float(np.nan), "true": float(np.nan), "rel_error": float(prof_err.mean())}
    return out
