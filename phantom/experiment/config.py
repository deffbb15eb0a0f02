"""The A/B readout's settings (params.yaml `ab_report`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReadoutConfig(BaseModel):
    """How the A/B readout reads the experiment (params.yaml `ab_report`)."""

    model_config = ConfigDict(extra="forbid")

    control: str = "static"
    """The control arm (list price); every other arm is compared with it."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """Level of the always-valid revenue-per-view interval (split over treatments)."""
    harm_alpha: float = Field(0.05, gt=0, lt=1)
    """Level of the always-valid human-conversion interval (the guardrail)."""
    mixture_relative_effect: float = Field(0.05, gt=0)
    """Scale of the mSPRT mixture, relative to the control's value: intervals are tightest for effects near it."""
    human_cohort: str = "xp_human_only"
    """The shop's verified-human cohort."""
    attribution_ms: int = Field(3_600_000, gt=0)
    """A purchase counts for the latest decision on the same product in the session at most this long before it."""
    prior_views: float = Field(20.0, ge=0)
    """Pseudo views shrinking each product's pre-experiment conversion to the overall rate."""
    srm_alpha: float = Field(0.001, gt=0, lt=1)
    """Sample-ratio-mismatch test level: below it the readout stops (the split is broken)."""
    weights: dict[str, float] = Field(default_factory=dict)
    """The arms' configured weights (PHANTOM_AB_ARMS); empty: equal."""
    min_sessions: int = Field(100, ge=1)
    """Sessions an arm needs before any verdict."""
