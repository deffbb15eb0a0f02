"""Why the detector scores a session as an agent: SHAP values of the XGBoost booster.

Per request (`explain`, the service's `?explain=true`): XGBoost's own exact TreeSHAP
(`pred_contribs`) on one row, the same values `shap.TreeExplainer` gives on the raw margin, with no
`shap` import and nothing computed unless asked (about a millisecond a row).

For the report (`shap_values`, `top_reasons`): `shap.TreeExplainer` on a batch, timed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Attribution:
    """One feature's push on a score: its value and its SHAP contribution (log-odds)."""

    feature: str
    value: float
    shap: float

    def text(self) -> str:
        """`events_per_min = 41.2 raises the agent score (+1.83 log-odds)`."""
        way = "raises" if self.shap > 0 else "lowers"
        return f"{self.feature} = {self.value:.4g} {way} the agent score ({self.shap:+.2f} log-odds)"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"feature": self.feature, "value": self.value, "shap": self.shap, "text": self.text()}


def booster_of(model: Any) -> tuple[Any, list[str]]:
    """(booster, feature names) inside a loaded `agent-detector` pyfunc model."""
    inner = model.unwrap_python_model()
    return inner.booster, list(inner.spec["features"])


def contributions(booster: Any, frame: pd.DataFrame | np.ndarray, features: Sequence[str]) -> np.ndarray:
    """Exact TreeSHAP values (n, F) of the raw margin, bias column dropped."""
    import xgboost as xgb

    x = frame if isinstance(frame, np.ndarray) else pd.DataFrame(frame)[list(features)].to_numpy(dtype=np.float32)
    # one thread: building a DMatrix on all cores costs ~50 ms of thread start-up for a single row
    matrix = xgb.DMatrix(np.asarray(x, dtype=np.float32), feature_names=list(features), nthread=1)
    return booster.predict(matrix, pred_contribs=True)[:, :-1]


def top_attributions(values: np.ndarray, row: np.ndarray, features: Sequence[str], top: int = 3) -> list[Attribution]:
    """The `top` largest |SHAP| features of one row, largest first."""
    order = np.argsort(-np.abs(values), kind="stable")[:top]
    return [Attribution(features[j], float(row[j]), float(values[j])) for j in order]


def explain(
    booster: Any, features: Sequence[str], request: Mapping[str, Any] | pd.Series, top: int = 3
) -> list[Attribution]:
    """A request's top three reasons for its agent score (exact TreeSHAP on one row, a few ms)."""
    missing = [f for f in features if f not in request]
    if missing:
        raise ValueError(f"explain: request lacks feature(s) {missing}")
    row = np.array([[float(request[f]) for f in features]], dtype=np.float32)
    return top_attributions(contributions(booster, row, features)[0], row[0], features, top)


@dataclass
class ShapResult:
    """SHAP values of a batch with the time they took."""

    values: np.ndarray  # (n, F) log-odds contributions
    base_value: float
    data: pd.DataFrame  # the rows explained (feature columns)
    seconds: float

    @property
    def importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        s = pd.Series(np.abs(self.values).mean(axis=0), index=self.data.columns, name="mean_abs_shap")
        return s.sort_values(ascending=False)


def shap_values(booster: Any, frame: pd.DataFrame, features: Sequence[str]) -> ShapResult:
    """`shap.TreeExplainer` on the booster over `frame`, timed (explainer construction included)."""
    import shap

    data = pd.DataFrame(frame)[list(features)].astype(np.float32)
    started = time.perf_counter()
    explainer = shap.TreeExplainer(booster)
    values = np.asarray(explainer.shap_values(data), dtype=float)
    seconds = time.perf_counter() - started
    return ShapResult(values, float(np.ravel(explainer.expected_value)[0]), data, seconds)


def top_reasons(result: ShapResult, rows: np.ndarray, ids: Sequence[str], p: np.ndarray, top: int = 3) -> pd.DataFrame:
    """For the chosen rows: session, P(agent) and its `top` reasons as text (one row per reason)."""
    out = []
    features = list(result.data.columns)
    x = result.data.to_numpy(dtype=float)
    for i in rows:
        for rank, a in enumerate(top_attributions(result.values[i], x[i], features, top), 1):
            out.append({"session_id": ids[i], "p_agent": float(p[i]), "rank": rank, **a.as_dict()})
    return pd.DataFrame(out)


def most_confident_agents(p: np.ndarray, y: np.ndarray, n: int = 10) -> np.ndarray:
    """Rows of true agents with the highest P(agent)."""
    idx = np.flatnonzero(np.asarray(y) == 1)
    return idx[np.argsort(-np.asarray(p)[idx], kind="stable")[:n]]


def false_positives(p: np.ndarray, y: np.ndarray, threshold: float, n: int = 10) -> np.ndarray:
    """People flagged as agents (P(agent) >= threshold), highest score first; if fewer, the highest-scored people."""
    p, y = np.asarray(p), np.asarray(y)
    idx = np.flatnonzero(y == 0)
    order = idx[np.argsort(-p[idx], kind="stable")]
    flagged = order[p[order] >= threshold]
    return flagged[:n] if len(flagged) >= n else order[:n]


def plots(result: ShapResult, max_display: int = 15) -> dict[str, Any]:
    """Global importance bar chart and beeswarm (matplotlib figures by file name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    exp = shap.Explanation(
        result.values,
        base_values=np.full(len(result.values), result.base_value),
        data=result.data.to_numpy(),
        feature_names=list(result.data.columns),
    )
    figures = {}
    for name, draw in (("detector_importance.png", shap.plots.bar), ("detector_beeswarm.png", shap.plots.beeswarm)):
        plt.figure()
        # the beeswarm jitters and shuffles its dots with numpy's global RNG: a fixed seed makes the
        # PNG (a DVC out) the same on every rebuild; the caller's RNG state is put back
        state = np.random.get_state()
        np.random.seed(0)
        try:
            draw(exp, max_display=max_display, show=False)
        finally:
            np.random.set_state(state)
        fig = plt.gcf()
        fig.set_size_inches(8, 6)
        fig.suptitle("Agent detector: SHAP on the test split (log-odds)")
        fig.tight_layout()
        figures[name] = fig
    return figures


def time_requests(booster: Any, features: Sequence[str], rows: Sequence[Mapping[str, Any]], top: int = 3) -> float:
    """Mean milliseconds of one `explain` call over `rows` (requests as dicts, as a service holds them)."""
    started = time.perf_counter()
    for row in rows:
        explain(booster, features, row, top)
    return 1000 * (time.perf_counter() - started) / max(len(rows), 1)


@dataclass
class DetectorReport:
    """The detector's SHAP report on a test split: values, reasons tables, timings."""

    shap: ShapResult
    reasons: dict[str, pd.DataFrame]  # most_confident_agents, false_positives
    request_ms: float

    def metrics(self) -> dict[str, Any]:
        """Timings and the top features, for metrics/explain.json."""
        n = len(self.shap.data)
        return {
            "detector_shap_seconds": self.shap.seconds,
            "detector_shap_rows": n,
            "detector_shap_ms_per_row": 1000 * self.shap.seconds / max(n, 1),
            "explain_request_ms": self.request_ms,
            "detector_top_features": list(self.shap.importance.index[:5]),
        }


def detector_report(
    model: Any, frame: pd.DataFrame, p_agent: np.ndarray, n: int = 10, top: int = 3, timed: int = 200
) -> DetectorReport:
    """SHAP over `frame` (labeled sessions), reasons for the most confident agents and false positives, timings."""
    booster, features = booster_of(model)
    threshold = float(model.unwrap_python_model().spec["threshold"])
    y = frame["is_agent"].astype(int).to_numpy()
    result = shap_values(booster, frame, features)
    ids = frame["session_id"].to_numpy()
    reasons = {
        "most_confident_agents": top_reasons(result, most_confident_agents(p_agent, y, n), ids, p_agent, top),
        "false_positives": top_reasons(result, false_positives(p_agent, y, threshold, n), ids, p_agent, top),
    }
    rows = frame[features].head(timed).to_dict(orient="records")
    return DetectorReport(result, reasons, time_requests(booster, features, rows, top))
