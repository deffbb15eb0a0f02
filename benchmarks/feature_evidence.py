"""The evidence behind the 29 session features, on simulated traffic, from labeled sessions only.

    python benchmarks/feature_evidence.py [--days 7] [--seed 11]

Prints, per feature, the univariate ROC AUC (direction-free: max(auc, 1 - auc)) of labeled agents
against labeled people, overall and per agent family, on final sessions and on the first 10
events; then a gradient-boosted model's test AUC with all 29 features and without each group,
and its permutation importances. Labels come from experiment ids, as in training.
"""

from __future__ import annotations

import argparse

import pandas as pd


def univariate(sessions: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Direction-free AUC per feature: all agents, then each family, against people."""
    from sklearn.metrics import roc_auc_score

    s = sessions[sessions["labeled"]]
    y = s["is_agent"].astype(int).to_numpy()
    fam = s["label_family"].to_numpy()
    rows = {}
    for name in names:
        x = s[name].to_numpy()
        auc = roc_auc_score(y, x)
        row = {"all": max(auc, 1 - auc)}
        for family in sorted(set(fam) - {"human"}):
            m = (fam == family) | (fam == "human")
            a = roc_auc_score(fam[m] == family, x[m])
            row[family] = max(a, 1 - a)
        rows[name] = row
    return pd.DataFrame(rows).T.round(3)


def model_checks(sessions: pd.DataFrame, names: list[str], groups: dict[str, list[str]], seed: int) -> dict:
    """Test AUC of a boosted model on all features and without each group; permutation importance."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import roc_auc_score

    s = sessions[sessions["labeled"]].sort_values("start_ms")
    y = s["is_agent"].astype(int).to_numpy()
    cut = int(len(s) * 0.7)  # split by time: oldest 70% train

    def fit(cols: list[str]) -> tuple[float, object]:
        model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=seed)
        model.fit(s[cols].iloc[:cut], y[:cut])
        return roc_auc_score(y[cut:], model.predict_proba(s[cols].iloc[cut:])[:, 1]), model

    out = {}
    auc, model = fit(names)
    out["all_29"] = round(auc, 4)
    for group, members in groups.items():
        out[f"without_{group}"] = round(fit([n for n in names if n not in members])[0], 4)
    pi = permutation_importance(model, s[names].iloc[cut:], y[cut:], scoring="roc_auc", n_repeats=5, random_state=seed)
    out["importance"] = pd.Series(pi.importances_mean, index=names).sort_values(ascending=False).round(4)
    return out


def main(argv: list[str] | None = None) -> None:
    """Simulate, build the features, print the evidence."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    from phantom.features.aggregator import build
    from phantom.features.registry import GROUPS, SESSION_FEATURES, group_features
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=args.days, seed=args.seed))
    tables = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts)
    pd.set_option("display.width", 160)
    for title, frame in (("final sessions", tables.sessions), ("first 10 events", tables.sessions_early)):
        print(f"\nunivariate AUC, {title} ({int(frame['labeled'].sum())} labeled sessions)")
        print(univariate(frame, SESSION_FEATURES).to_string())
        checks = model_checks(frame, SESSION_FEATURES, {g: group_features(g) for g in GROUPS}, args.seed)
        importance = checks.pop("importance")
        print(f"\nboosted model test AUC ({title}): {checks}")
        print("permutation importance (AUC drop), top 12:")
        print(importance.head(12).to_string())


if __name__ == "__main__":
    main()
