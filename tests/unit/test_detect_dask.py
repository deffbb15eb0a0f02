"""xgboost.dask (issue 20, item 2): the detector trained on a LocalCluster scores like the in-process one.

Same data, same hyper-parameters, same early stopping: the distributed booster's test ROC-AUC is
within 0.005 of the in-process booster's, and its scores are close row by row.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def split():
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=1.5, seed=4))
    sessions = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).sessions
    labeled = sessions[sessions["labeled"]].sort_values("start_ms").reset_index(drop=True)
    labeled["is_agent"] = labeled["is_agent"].astype(float)
    cut = [int(len(labeled) * 0.6), int(len(labeled) * 0.8)]
    return labeled.iloc[: cut[0]], labeled.iloc[cut[0] : cut[1]], labeled.iloc[cut[1] :]


def test_xgboost_dask_scores_within_tolerance_of_in_process(split):
    import dask.dataframe as dd
    from sklearn.metrics import roc_auc_score

    from phantom.detect import classifier, dask_fit
    from phantom.features.dask_engine import DaskConfig, client
    from phantom.features.registry import SESSION_FEATURES

    train, val, test = split
    features = list(SESSION_FEATURES)
    params = {
        **classifier.base_params(classifier.TuneConfig(search_space={})),
        "eta": 0.1,
        "max_depth": 4,
        "subsample": 1.0,
    }
    local = classifier.fit(
        params,
        classifier.matrix(train, features),
        300,
        valid=classifier.matrix(val, features),
        early_stopping_rounds=30,
    )
    p_local = classifier.predict_raw(local, test, features)
    with client(DaskConfig(workers=2, threads_per_worker=1, memory_limit="2GB")) as c:
        booster = dask_fit.fit(
            c,
            params,
            dd.from_pandas(train, npartitions=3),
            features,
            300,
            valid=dd.from_pandas(val, npartitions=2),
            early_stopping_rounds=30,
        )
        p_dask = dask_fit.predict_raw(c, booster, dd.from_pandas(test, npartitions=3), features).compute()
    y = test["is_agent"].to_numpy()
    auc_local, auc_dask = roc_auc_score(y, p_local), roc_auc_score(y, np.asarray(p_dask))
    assert auc_local > 0.9  # a real detector, not two coin flips that agree
    assert abs(auc_dask - auc_local) <= 0.005, (auc_local, auc_dask)
    assert np.mean(np.abs(np.asarray(p_dask) - p_local)) < 0.02
    assert type(booster) is type(local)  # the same kind of model: packaged and registered the same way
