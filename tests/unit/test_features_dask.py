"""Features on Dask (issue 20, item 1): the same matrices as the pandas engine, row for row.

A small simulated world is written as several parquet parts (as ingest stores them); the pandas
engine reads them whole, the Dask engine reads them lazily on a distributed.LocalCluster with more
session partitions than parts. The three matrices must be equal (values, dtypes, row order), the
cross-session product context included, and so must the stats the stage reports.
"""

from __future__ import annotations

import pandas as pd
import pytest

from pipelines.features import EVENT_COLUMNS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from phantom.simulate.traffic import TrafficConfig, simulate

    root = tmp_path_factory.mktemp("dask-world")
    traffic = simulate(TrafficConfig(days=0.5, seed=3))
    events = traffic.events
    parts = []
    for i, chunk in enumerate(range(0, len(events), len(events) // 3 + 1)):  # time-ordered parts, like ingest's
        path = root / f"part-{i:06d}.parquet"
        events.iloc[chunk : chunk + len(events) // 3 + 1].to_parquet(path)
        parts.append(path)
    return parts, traffic.catalogue, traffic.cohorts


def test_dask_engine_equals_pandas_row_for_row(world):
    from phantom.features import aggregator, dask_engine

    parts, catalogue, cohorts = world
    cfg = aggregator.FeatureConfig()
    events = pd.read_parquet([str(p) for p in parts], columns=EVENT_COLUMNS)
    expected = aggregator.build(events, catalogue, cfg, cohorts=cohorts)
    dcfg = dask_engine.DaskConfig(partitions=5, workers=2, threads_per_worker=1, memory_limit="2GB")
    with dask_engine.client(dcfg):
        got = dask_engine.build(dask_engine.read(parts, EVENT_COLUMNS), catalogue, cfg, cohorts, dcfg)

    assert expected.decisions["product_past_views"].max() > 0  # the cross-session context is exercised
    for name in ("sessions", "sessions_early", "decisions"):
        pd.testing.assert_frame_equal(getattr(got, name), getattr(expected, name), check_exact=True, obj=name)
    assert got.stats == expected.stats


def test_partitions_never_split_a_session():
    from phantom.features.dask_engine import partition_of

    ids = pd.Series([f"s{i % 50}" for i in range(1000)])
    parts = pd.Series(partition_of(ids, 7))
    assert parts.groupby(ids).nunique().max() == 1
    assert set(parts) <= set(range(7)) and parts.nunique() > 1


def test_unknown_engine_names_the_key(tmp_path):
    import yaml

    from phantom.features.aggregator import FeatureConfig
    from phantom.params import ParamsError, load
    from tests.stage_runner import ROOT

    with pytest.raises(ValueError, match=r"features\.engine"):
        FeatureConfig.from_params({"engine": "spark"})
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["engine"] = "spark"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as err:
        load(path)
    assert any("features.engine" in line for line in err.value.lines)
    params["features"]["engine"] = "dask"
    params["features"]["dask"] = {"partitons": 4}  # misspelt
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as err:
        load(path)
    assert any("features.dask.partitons" in line for line in err.value.lines)
