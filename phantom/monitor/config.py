"""The monitor's params (`monitor_reference` and `monitor` sections of params.yaml), validated at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

THRESHOLDS_FILE = "config/monitor_thresholds.yaml"  # written by `python -m benchmarks.drift`, read by the monitor


class ReferenceConfig(BaseModel):
    """How the reference is cut from the training data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    period: Literal["validation", "train"] = "validation"
    """Which detector split's time period the reference is cut from. `validation`: sessions started
    after the detector's last training session and by its last validation one (labeled and
    unlabeled), so P(agent) is scored out of sample as in production; the monitor judges what follows.
    `train`: everything by the detector's last training session (in-sample P(agent), biased toward
    the training labels: the false alarms of docs/monitor.md)."""
    decisions: Literal["train", "history", "period"] = "train"
    """Reference decisions: `train`, those of the detector's training period (before the sessions'
    period; what the reference always held); `history`, every decision before the reference's end;
    `period`, only those of the sessions' period. The decision-side tests (human-cohort conversion,
    people's price response) fit purchase labels, not model outputs; chosen by the price-response
    dispersion on normal tuning windows (mean chi2 / 2: 0.95 train, 1.47 history, 3.15 period)."""
    max_sessions: int = Field(20000, ge=100)
    """Reference sessions kept (a seeded random sample; Evidently's cost grows with the reference)."""
    max_decisions: int = Field(300000, ge=100)
    """Reference decisions kept (same sample rule); keep them all when they fit, the human-cohort
    conversion per price bucket needs every labeled view it can get."""
    seed: int = 7
    """Seed of the sample."""


class DriftTests(BaseModel):
    """The thresholds the report's tests carry; chosen on normal windows held out from the reported ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_method: str = "wasserstein"
    """Evidently drift method for numerical columns (an effect size: does not fire on tiny shifts in big windows)."""
    cat_method: str = "jensenshannon"
    """Evidently drift method for categorical columns."""
    num_threshold: float = Field(0.1, gt=0)
    """A numerical column drifts when its normed Wasserstein distance reaches this."""
    cat_threshold: float = Field(0.1, gt=0)
    """A categorical column drifts when its Jensen-Shannon distance reaches this."""
    column_thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-column drift thresholds (features and model outputs) that override the two above."""
    max_drifted_columns: int = Field(0, ge=0)
    """The window fails when more feature columns than this drift."""
    prediction_threshold: float = Field(0.1, gt=0)
    """P(agent), P(buy) and the chosen price ratio drift when their normed Wasserstein distance reaches this."""
    agent_share_tolerance: float = Field(0.03, ge=0)
    """Mean P(agent) (the estimated agent share) may differ from the reference's by this much plus noise."""
    conversion_tolerance: float = Field(0.0, ge=0)
    """Human-cohort conversion per price bucket may differ from the reference's by this much plus noise."""
    z: float = Field(3.5, gt=0)
    """Standard errors of noise allowed on the agent share and on each bucket's conversion."""
    price_response_chi2: float = Field(9.21, gt=0)
    """People's purchase curve over log price (level and slope, verified-human cohort) fails when its
    Wald chi-square (2 df) against the reference's exceeds this (9.21: 1 % per window if the
    standard errors are right; `benchmarks.drift` scales it by the dispersion seen on normal windows)."""


class MonitorConfig(BaseModel):
    """Windows and tests of `python -m pipelines.monitor`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_hours: float = Field(24.0, gt=0)
    """Length of a current window (by event time)."""
    min_sessions: int = Field(300, ge=1)
    """A window with fewer sessions is skipped (reported, not judged)."""
    price_response_hours: float = Field(72.0, gt=0)
    """People's price-response test reads the decisions of this many hours up to the window's end
    (at least the window; never before the reference's end): a day of a cohort's purchases is too few."""
    match_hours: bool = True
    """Compare a window shorter than a day with the reference's sessions from the same hours of day."""
    price_buckets: list[float] = Field(default_factory=lambda: [0.7, 0.9, 1.1, 1.3, 1.5])
    """Edges of the price-ratio buckets of the human-cohort conversion check."""
    report_reference_rows: int = Field(30000, ge=100)
    """Reference rows per table Evidently compares with (a seeded sample; the mean bounds use them all)."""
    human_cohort: str = "xp_human_only"
    """experiment_id of the verified-human cohort."""
    cohort_min_sessions: int = Field(50, ge=2)
    """A lone drifted column is read as new traffic (retrain) rather than a client bug only when the
    verified-human cohort, with at least this many sessions on each side, did not move on it."""
    thresholds: str | None = THRESHOLDS_FILE
    """The versioned file of tuned tests the tuning run (`python -m benchmarks.drift`) writes:
    the monitor ships exactly the thresholds its reported rates were measured with."""
    tests: DriftTests = Field(default_factory=DriftTests)
    """The tests' thresholds: `from_params` fills them from `thresholds` (never typed by hand)."""


def from_params(section: dict[str, Any], root: Path | str = ".") -> MonitorConfig:
    """The monitor's config from params.yaml `monitor`, its tests read from the tuned thresholds file."""
    import yaml

    cfg = MonitorConfig(**section)
    if cfg.thresholds is None:
        return cfg
    if "tests" in section:
        raise ValueError(f"params.yaml monitor: `tests` and `thresholds: {cfg.thresholds}` are two sources; keep one")
    path = Path(root) / cfg.thresholds
    if not path.exists():
        raise FileNotFoundError(f"{path}: the tuned monitor thresholds are missing; run python -m benchmarks.drift")
    tuned = yaml.safe_load(path.read_text())
    if float(tuned["window_hours"]) != cfg.window_hours:
        raise ValueError(
            f"{path} was tuned for {tuned['window_hours']} h windows, params.yaml monitor.window_hours is "
            f"{cfg.window_hours}: rerun python -m benchmarks.drift"
        )
    return cfg.model_copy(update={"tests": DriftTests(**tuned["tests"])})


def write_thresholds(path: Path | str, tests: DriftTests, window_hours: float, source: dict[str, Any]) -> Path:
    """Write the tuned tests (and the window length and run they belong to) to the versioned thresholds file."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = (
        "# The drift monitor's tuned thresholds: written by `python -m benchmarks.drift` (the tuning run that\n"
        "# measured the false-alarm and detection rates in metrics/drift.json), read by the monitor. Not by hand.\n"
    )
    body = {"window_hours": float(window_hours), "source": dict(source), "tests": tests.model_dump()}
    path.write_text(head + yaml.safe_dump(body, sort_keys=True))
    return path
