"""A catalogue without `popularity`: an error naming the column by default, traffic-derived popularity on request.

Both through the real features stage (a subprocess with an edited params.yaml) on a small simulated world.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.stage_runner import run_stage


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A quarter-day world: events file and a catalogue with the popularity column dropped."""
    from phantom.simulate.traffic import TrafficConfig, simulate

    root = tmp_path_factory.mktemp("popularity")
    traffic = simulate(TrafficConfig(days=0.25, seed=3))
    traffic.events.to_parquet(root / "events.parquet")
    traffic.catalogue.drop(columns=["popularity"]).to_parquet(root / "catalogue.parquet")
    traffic.cohorts.to_parquet(root / "cohorts.parquet")
    return root, traffic


def _features(root, tmp_path, source: str | None):
    def edit(params):
        if source is not None:
            params["features"]["popularity"] = source

    return run_stage(
        tmp_path,
        "features",
        edit,
        "--events",
        str(root / "events.parquet"),
        "--catalogue",
        str(root / "catalogue.parquet"),
        "--cohorts",
        str(root / "cohorts.parquet"),
        "--out",
        str(tmp_path / "features"),
        "--metrics",
        str(tmp_path / "features.json"),
        "--report",
        str(tmp_path / "report.json"),
    )


def test_catalogue_without_popularity_fails_with_one_line_naming_file_and_column(world, tmp_path) -> None:
    root, _ = world
    result = _features(root, tmp_path, None)  # default: popularity comes from the catalogue
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # the lines before it say what was read
    assert last.startswith(f"{root / 'catalogue.parquet'}: catalogue column 'popularity' is missing")
    assert not (tmp_path / "features").exists()  # nothing half-written


def test_catalogue_without_popularity_works_with_traffic_popularity(world, tmp_path) -> None:
    root, traffic = world
    result = _features(root, tmp_path, "traffic")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "features.json").read_text())
    assert metrics["popularity_source"] == "traffic" and metrics["catalogue_popularity_invalid"] == 0
    sessions = pd.read_parquet(tmp_path / "features" / "sessions.parquet")
    viewed = sessions["product_view_count"] > 0
    assert (sessions.loc[viewed, "popularity_log_mean"] < 0).all()  # never the silent 0 of a missing column
    # the view counts rank products like the generator's hidden popularity does (noisily: few views each)
    from phantom.features.popularity import from_traffic

    derived = from_traffic(traffic.events, traffic.catalogue.drop(columns=["popularity"]))["popularity"]
    rho = pd.Series(derived.to_numpy()).corr(traffic.catalogue["popularity"].reset_index(drop=True), method="spearman")
    assert rho > 0.2  # a quarter day of views; unrelated rankings of 2,000 products: |rho| ~ 0.02
    assert np.isfinite(sessions.loc[viewed, "popularity_log_min"]).all()
