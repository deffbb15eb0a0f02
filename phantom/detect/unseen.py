"""Leave-one-family-out: how the detector does on an agent family it has never seen, and what that chooses.

For each labeled agent family, the training recipe runs without it: the supervised booster on the
train split minus the family, the positive-unlabeled booster (`phantom.detect.pu`) on the same plus
the unlabeled pool (which may hold the family, unlabeled, as live traffic would), and the shipped
operating rule (precision >= min_precision and human FPR <= max_human_fpr, lowest threshold) applied
on the validation split minus the family. The family's validation sessions then say how much of a
family never seen that threshold catches: that recall, worst family first, chooses the blend weight
of the PU score (`choose_weight`). The same refits scored on the test split are reported
(`loo_family_recall`, `loo_family_auc`), never used to choose.

The rule is applied to raw (blended) scores: calibration is monotone, so precision and human FPR
at a threshold, and therefore the threshold's recall, are the same on calibrated scores (up to ties
that isotonic steps create).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect import classifier, evaluate, pu
from phantom.metrics import auc, ranking


@dataclass
class FamilyRefit:
    """The recipe's boosters trained without one agent family."""

    family: str
    supervised: Any
    pu: Any | None

    def scores(self, frame: pd.DataFrame, features: Sequence[str], weight: float) -> np.ndarray:
        """Blended raw scores of `frame` (the supervised score alone when weight is 0)."""
        sup = classifier.predict_raw(self.supervised, frame, features)
        if weight == 0 or self.pu is None:
            return sup
        return pu.blend(sup, classifier.predict_raw(self.pu, frame, features), weight)


def refit_without_each_family(
    train: pd.DataFrame,
    pool: pd.DataFrame | None,
    features: Sequence[str],
    params: Mapping[str, Any],
    rounds: int,
    progress: Callable[[str], None] | None = None,
) -> list[FamilyRefit]:
    """One `FamilyRefit` per agent family of `train` (with a PU booster when `pool` is given)."""
    families = sorted(set(train.loc[train["is_agent"] == 1, "label_family"].dropna()))
    out = []
    for family in families:
        rest = train.loc[train["label_family"] != family]
        sup = classifier.refit(rest, features, params, rounds)
        pu_booster = pu.fit_pu(rest, pool, features, params, rounds) if pool is not None else None
        out.append(FamilyRefit(family, sup, pu_booster))
        if progress is not None:
            progress(f"leave-one-family-out: refit without {family}")
    return out


def family_operating_point(
    refit: FamilyRefit,
    val: pd.DataFrame,
    held: pd.DataFrame,
    features: Sequence[str],
    weight: float,
    op: Mapping[str, Any],
) -> dict[str, float]:
    """Threshold by the shipped rule on `val` minus the family; the family's recall and people's FPR on `held`."""
    seen = val.loc[val["label_family"] != refit.family]
    threshold, met = evaluate.operating_threshold(
        seen["is_agent"], refit.scores(seen, features, weight), float(op["min_precision"]), float(op["max_human_fpr"])
    )
    family = held["label_family"] == refit.family
    people = held["is_agent"] == 0
    p_family = refit.scores(held.loc[family], features, weight)
    p_people = refit.scores(held.loc[people], features, weight)
    y = np.r_[np.zeros(p_people.size), np.ones(p_family.size)]
    return {
        "threshold": float(threshold),
        "threshold_met": bool(met),
        "recall": float((p_family >= threshold).mean()) if p_family.size else float("nan"),
        "human_fpr": float((p_people >= threshold).mean()) if p_people.size else float("nan"),
        "auc": auc(y, np.r_[p_people, p_family]),
        "sessions": int(p_family.size),
    }


def leave_one_family_out(
    refits: Sequence[FamilyRefit],
    val: pd.DataFrame,
    held: pd.DataFrame,
    features: Sequence[str],
    weight: float,
    op: Mapping[str, Any],
) -> dict[str, dict[str, float]]:
    """`family_operating_point` of every family, keyed by family."""
    return {r.family: family_operating_point(r, val, held, features, weight, op) for r in refits}


def choose_weight(
    refits: Sequence[FamilyRefit],
    val: pd.DataFrame,
    features: Sequence[str],
    weights: Sequence[float],
    op: Mapping[str, Any],
    min_lift: float,
    full: FamilyRefit | None = None,
    max_auc_loss: float = 1.0,
    max_recall_loss: float = 1.0,
) -> tuple[float, dict[float, dict[str, float]]]:
    """The PU blend weight with the best worst-family validation recall, within the known-family guardrails.

    A weight is eligible when the recipe on every family (`full`: boosters fitted on the whole train
    split) loses at most `max_auc_loss` of validation ROC-AUC and `max_recall_loss` of validation
    recall at the operating rule against the supervised score (weight 0). Among eligible weights the
    one whose worst left-out family recall on validation is highest wins; it is kept only when it
    beats weight 0 by at least `min_lift`, else 0. Returns (weight, {weight: the evidence}).
    """
    table: dict[float, dict[str, float]] = {}
    for w in sorted({0.0, *map(float, weights)}):
        loo = leave_one_family_out(refits, val, val, features, w, op)
        row = {"worst_family_recall": min(v["recall"] for v in loo.values()) if loo else float("nan")}
        if full is not None:
            p = full.scores(val, features, w)
            threshold, _ = evaluate.operating_threshold(
                val["is_agent"], p, float(op["min_precision"]), float(op["max_human_fpr"])
            )
            row.update(ranking(val["is_agent"], p))
            row["recall"] = evaluate.confusion_at(val["is_agent"], p >= threshold)["recall"]
        table[w] = row
    base = table[0.0]

    def eligible(w: float) -> bool:
        row = table[w]
        if full is None or w == 0.0:
            return True
        return row["roc_auc"] >= base["roc_auc"] - max_auc_loss and row["recall"] >= base["recall"] - max_recall_loss

    for w, row in table.items():
        row["eligible"] = float(eligible(w))
    best = max((w for w in table if eligible(w)), key=lambda w: (table[w]["worst_family_recall"], -w))
    lift = table[best]["worst_family_recall"] - base["worst_family_recall"]
    return (best if lift >= min_lift else 0.0), table


def frontier(
    refits: Sequence[FamilyRefit],
    held: pd.DataFrame,
    features: Sequence[str],
    weight: float,
    max_fpr: float = 0.05,
    points: int = 51,
) -> pd.DataFrame:
    """Recall of each left-out family against people's FPR on `held`, FPR from 0 to `max_fpr` (for the plot)."""
    rows = []
    people = held.loc[held["is_agent"] == 0]
    for r in refits:
        p_people = r.scores(people, features, weight)
        p_family = r.scores(held.loc[held["label_family"] == r.family], features, weight)
        if not p_people.size or not p_family.size:
            continue
        for fpr in np.linspace(0.0, max_fpr, points):
            t = np.quantile(p_people, 1 - fpr, method="higher") if fpr > 0 else np.nextafter(p_people.max(), 2)
            rows.append(
                {
                    "family": r.family,
                    "human_fpr": float((p_people >= t).mean()),
                    "recall": float((p_family >= t).mean()),
                }
            )
    return pd.DataFrame(rows, columns=["family", "human_fpr", "recall"])


def share_estimates(
    refits: Sequence[FamilyRefit],
    val: pd.DataFrame,
    held: pd.DataFrame,
    features: Sequence[str],
    weight: float,
) -> dict[str, dict[str, float]]:
    """Agent share of `held` estimated by each refit without its family (the family there, unseen).

    Each refit's scores are Platt-calibrated on validation without the family (the recipe's own
    data), and the share of `held` is estimated by EM from that prior; `true` is `held`'s labeled share.
    """
    from phantom.detect import calibration, prior_shift

    out = {}
    true = float(held["is_agent"].astype(float).mean())
    for r in refits:
        seen = val.loc[val["label_family"] != r.family]
        y = seen["is_agent"].astype(int).to_numpy()
        platt = calibration.fit_platt(r.scores(seen, features, weight), y)
        est = prior_shift.em_prior(platt.apply(r.scores(held, features, weight)), float(y.mean()))
        out[r.family] = {"naive": est.naive, "em": est.share, "true": true, "abs_error": abs(est.share - true)}
    return out
