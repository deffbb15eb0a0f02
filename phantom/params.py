"""The typed schema of params.yaml: one pydantic model per section, one for the whole file.

Every stage validates the WHOLE file against `Params` before it reads its own section, so a typo
(`price_ratoi`), a wrong type (`fetch_max_bytes: "64MB"`, `quarantine_duplicates: "false"`) or an
out-of-range value anywhere is refused with its key path, e.g.

    params.yaml: ingest.kafka.fetch_max_bytes: expected an integer, got "64MB"

Models are strict: no string is read as a number or a boolean, and unknown keys are errors.
Each section is its own class, so the engineer who owns a stage edits only that class.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from phantom.experiment.config import ReadoutConfig  # the A/B readout (docs/operate.md)
from phantom.monitor.config import MonitorConfig, ReferenceConfig  # the monitor's sections (docs/monitor.md)

PositiveInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


class Section(BaseModel):
    """Base of every params model: strict types, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ordered(pair: list[float] | None, name: str) -> None:
    if pair is not None and pair[0] > pair[1]:
        raise ValueError(f"{name}: low {pair[0]:g} is above high {pair[1]:g}")


# --- shared blocks ----------------------------------------------------------------------------


class LimitsParams(Section):
    """The contract's limits on a message (time window, sizes)."""

    max_lateness_ms: NonNegInt = Field(description="events older than received time minus this are late_event")
    max_clock_skew_ms: NonNegInt = Field(description="events newer than received time plus this are future_event")
    max_message_bytes: PositiveInt | None = Field(
        None, description="messages larger than this (bytes of the raw payload) are quarantined as oversize_message"
    )
    max_field_bytes: PositiveInt | None = Field(
        None, description="a text field longer than this (UTF-8 bytes) is quarantined as oversize_field:<name>"
    )


class Targets(Section):
    """Aims a stage reports against: metric -> floor / ceiling."""

    minimum: dict[str, float] = Field(default_factory=dict, description="metric -> value it should reach")
    maximum: dict[str, float] = Field(default_factory=dict, description="metric -> value it should stay under")


class Split(Section):
    """Shares of the train / validation / test parts (they must sum to 1)."""

    train: Share = Field(description="share of the oldest data used for training")
    val: Share = Field(description="share used for validation (tuning, thresholds)")
    test: Share = Field(description="share of the newest data held out for the reported figures")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:g}")
        return self


class SearchDim(Section):
    """One Optuna search dimension."""

    type: Literal["int", "float", "categorical"] = Field(description="kind of dimension")
    low: float | None = Field(None, description="lower bound (int, float)")
    high: float | None = Field(None, description="upper bound (int, float)")
    log: bool = Field(False, description="sample on a log scale")
    choices: list[Any] | None = Field(None, description="the values of a categorical dimension")

    @model_validator(mode="after")
    def _bounds(self) -> SearchDim:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs choices")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} dimension needs low <= high")
        return self


class Pruner(Section):
    """Optuna's median pruner."""

    n_startup_trials: NonNegInt = Field(description="trials that are never pruned")
    n_warmup_steps: NonNegInt = Field(description="steps of each trial that are never pruned")


# --- generate ---------------------------------------------------------------------------------


class MixParams(Section):
    """Who visits: the agent share and the kinds' shares inside each group."""

    agent_share: Share = Field(description="share of sessions run by agents")
    humans: dict[str, Annotated[float, Field(ge=0)]] = Field(description="human kind -> relative weight")
    agents: dict[str, Annotated[float, Field(ge=0)]] = Field(description="agent family -> relative weight")


class BadEventsParams(Section):
    """Contract-breaking messages the generator injects."""

    rate: Annotated[float, Field(ge=0)] = Field(description="bad messages per good event")
    kinds: dict[str, Annotated[float, Field(ge=0)]] = Field(description="kind of breakage -> relative weight")


class GenerateParams(Section):
    """`generate`: the simulated world (traffic, catalogue, wire stream)."""

    seed: int = Field(description="random seed of the world")
    start: str = Field(description="first day of traffic, YYYY-MM-DD (UTC)")
    days: Annotated[float, Field(gt=0)] = Field(description="days of traffic")
    sessions_per_hour: Annotated[float, Field(gt=0)] = Field(description="mean session arrival rate")
    n_products: PositiveInt = Field(description="products in the catalogue")
    price_multiplier: Pair = Field(description="the pricing experiment: base x U(lo, hi)")
    human_sensitivity: float = Field(description="demand slope in price for people")
    agent_sensitivity: float = Field(description="demand slope in price for agents")
    human_label_share: Share = Field(description="share of people in the verified-human cohort")
    agent_label_share: Share = Field(description="share of each agent family in its harness cohort")
    other_experiment_share: Share = Field(description="unlabeled sessions carrying an ordinary A/B id")
    network_delay_ms: Annotated[float, Field(ge=0)] = Field(description="mean delivery delay")
    out_of_order_rate: Share = Field(description="share of events delivered late (valid, out of order)")
    mix_concentration: Annotated[float, Field(gt=0)] = Field(description="how tightly sessions follow their kind")
    mix: MixParams
    bad_events: BadEventsParams
    limits: LimitsParams

    @model_validator(mode="after")
    def _pairs(self) -> GenerateParams:
        _ordered(self.price_multiplier, "price_multiplier")
        return self


# --- ingest -----------------------------------------------------------------------------------


class KafkaParams(Section):
    """`ingest.kafka`: the topic, the consumer group and the client's timeouts."""

    topic: str = Field(min_length=1, description="topic to consume")
    group_id: str = Field(min_length=1, description="consumer group (one per store)")
    partitions: PositiveInt = Field(3, description="partitions when `pipelines.publish` creates the topic")
    idle_timeout_s: Annotated[float, Field(gt=0)] = Field(
        5.0, description="drain mode: stop once every partition reached its start high-water mark, or this quiet"
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group with no committed offset starts"
    )
    session_timeout_ms: PositiveInt = Field(10_000, description="group session timeout")
    heartbeat_interval_ms: PositiveInt = Field(3_000, description="group heartbeat interval")
    max_poll_interval_ms: PositiveInt = Field(30_000, description="max time between polls before eviction")
    fetch_max_bytes: PositiveInt = Field(64 << 20, description="max bytes of one fetch response")
    max_partition_fetch_bytes: PositiveInt = Field(8 << 20, description="max bytes per partition per fetch")
    fetch_max_wait_ms: NonNegInt = Field(200, description="how long the broker may wait to fill a fetch")
    on_offset_gap: Literal["fail", "from_earliest"] = Field(
        "fail",
        description="a stored offset outside the partition's log (topic recreated, truncated): "
        "fail (stop, name the partition) or from_earliest (re-read from the log start; dedup drops repeats)",
    )
    outage_timeout_s: Annotated[float, Field(gt=0)] = Field(
        120.0, description="drain mode: give up (exit non-zero) after the broker is unreachable this long"
    )
    startup_timeout_s: Annotated[float, Field(gt=0)] = Field(
        60.0, description="give up (exit non-zero) when the group has assigned no partition this long"
    )
    retry_backoff_max_s: Annotated[float, Field(gt=0)] = Field(
        5.0, description="longest wait between reconnection attempts (exponential backoff from 0.2 s)"
    )
    stall_timeout_s: Annotated[float, Field(ge=0)] = Field(
        30.0,
        description="--follow: a partition kept but not fetched (below its log end, no progress this long, "
        "the broker answering) is a stall: commit, rejoin the group, read on (0: off)",
    )

    @model_validator(mode="after")
    def _timeouts(self) -> KafkaParams:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        return self


class IngestParams(Section):
    """`ingest`: the source and the batch loop (docs/ingest.md)."""

    source: Literal["simulator", "kafka"] = Field(description="simulator (stream file) or kafka")
    stream: str = Field(description="the generate stage's messages parquet (simulator source)")
    batch_size: PositiveInt = Field(description="messages per batch: one part + one manifest entry")
    max_batch_wait_s: Annotated[float, Field(gt=0)] = Field(description="kafka: write a partial batch after this")
    quarantine_duplicates: bool = Field(description="dropped duplicates also land in the quarantine")
    require_session_token: bool = Field(
        False,
        description="quarantine events whose Kafka header phantom-session-token is missing, invalid or names another "
        "session (keys from PHANTOM_SESSION_KEY; docs/security.md); the simulator source has no headers",
    )
    limits: LimitsParams
    kafka: KafkaParams


# --- validate ---------------------------------------------------------------------------------


class ValidateParams(Section):
    """`validate`: the raw events suite's inputs and thresholds."""

    events: str = Field(description="the ingest store to check")
    quarantine: str = Field("data/quarantine", description="the store's quarantine (its parts' checksums are verified)")
    catalogue: str = Field(description="catalogue parquet for the price checks")
    limits: LimitsParams
    price_ratio: Pair = Field(description="price / catalogue base price band")
    price_tolerance: Annotated[float, Field(ge=0)] = Field(description="relative slack at both ends")
    price_mostly: Share = Field(description="share of priced events that must be inside the band")
    catalogue_mostly: Share = Field(description="share of product events whose product is in the catalogue")
    event_type_mix: dict[str, Share] = Field(description="reference event type shares")
    event_type_max_kl: Annotated[float, Field(ge=0)] = Field(description="max KL divergence from the reference")
    session_events_median: Pair = Field(description="range of the median session's event count")
    session_events_p99_max: PositiveInt = Field(description="99% of sessions have at most this many events")
    session_events_max: PositiveInt = Field(description="no session has more events")
    labeled_share: Pair = Field(description="range of the share of labeled sessions")

    @model_validator(mode="after")
    def _pairs(self) -> ValidateParams:
        for name in ("price_ratio", "session_events_median", "labeled_share"):
            _ordered(getattr(self, name), name)
        return self


# --- features ---------------------------------------------------------------------------------


class FeatureExpectationsParams(Section):
    """`features.expectations`: the suite on the feature matrices."""

    min_sessions: NonNegInt = Field(description="fewest sessions a matrix may hold")
    min_decisions: NonNegInt = Field(description="fewest pricing decisions")
    labeled_share: Pair = Field(description="range of the share of labeled sessions")
    agent_share: Pair = Field(description="range of the agent share among labeled sessions")


class FeaturesDask(Section):
    """`features.dask`: the Dask engine (phantom/features/dask_engine.py)."""

    scheduler: str = Field("", description="empty: a LocalCluster here; else a scheduler address (tcp://host:8786)")
    partitions: PositiveInt = Field(8, description="session (and product) partitions; memory follows their size")
    workers: PositiveInt = Field(2, description="LocalCluster only: worker processes")
    threads_per_worker: PositiveInt = Field(1, description="LocalCluster only")
    memory_limit: str = Field("4GB", description="LocalCluster only: per worker, spilled to disk past it")


class FeaturesParams(Section):
    """`features`: point-in-time session features (docs/features.md)."""

    early_events: PositiveInt = Field(description="sessions_early: features over each session's first N events")
    popularity: Literal["catalogue", "traffic"] = Field(
        "catalogue", description="catalogue: its popularity column (required); traffic: view counts in the events"
    )
    conversion_prior: Share = Field(description="prior of product_past_conversion")
    conversion_strength: Annotated[float, Field(ge=0)] = Field(description="views the prior weighs")
    window_ms: PositiveInt = Field(description="trailing window of product_views_last_hour")
    chunk_events: PositiveInt | None = Field(None, description="events per processing chunk (memory bound)")
    engine: Literal["pandas", "dask"] = Field(
        "pandas", description="pandas: one process, all events in memory; dask: session partitions (docs/scale.md)"
    )
    dask: FeaturesDask | None = Field(None, description="engine dask: where it runs and how the events are cut")
    expectations: FeatureExpectationsParams


# --- train_detector ---------------------------------------------------------------------------


class DetectorTuning(Section):
    """`train_detector.tuning`: the Optuna study of the XGBoost detector."""

    seed: int
    n_trials: PositiveInt
    timeout_s: Annotated[float, Field(gt=0)] = Field(description="hard stop for the study")
    max_rounds: PositiveInt
    early_stopping_rounds: PositiveInt
    nthread: PositiveInt
    pruner: Pruner
    search_space: dict[str, SearchDim]


class Calibration(Section):
    """`train_detector.calibration`."""

    methods: list[Literal["isotonic", "platt", "identity"]] = Field(min_length=1)
    cv_folds: Annotated[int, Field(ge=2)]
    ece_bins: PositiveInt
    oof_folds: Annotated[int, Field(ge=2)]


class OperatingPoint(Section):
    """`train_detector.operating_point`: the threshold chosen on validation."""

    min_precision: Share
    max_human_fpr: Share


class Rule(Section):
    """`train_detector.rule`: the seed's baseline rule."""

    feature: str
    threshold: float


class PUParams(Section):
    """`train_detector.pu`: the positive-unlabeled score blended with the supervised one."""

    enabled: bool = Field(description="fit and consider the blend at all")
    weights: list[Share] = Field(min_length=1, description="blend weights tried in log-odds")
    min_lift: Annotated[float, Field(ge=0)] = Field(description="worst left-out recall it must lift to be kept")
    max_auc_loss: Annotated[float, Field(ge=0)] = Field(description="val ROC-AUC the known families may lose")
    max_recall_loss: Annotated[float, Field(ge=0)] = Field(description="val recall the known families may lose")


class TrainDetectorParams(Section):
    """`train_detector`: the XGBoost agent detector."""

    split: Split
    tuning: DetectorTuning
    calibration: Calibration
    operating_point: OperatingPoint
    pu: PUParams | None = None
    rule: Rule
    targets: Targets


# --- train_multitask --------------------------------------------------------------------------


class MultitaskTuning(Section):
    """`train_multitask.tuning`: the Optuna study of the multi-task net."""

    seed: int
    n_trials: PositiveInt
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    max_epochs: PositiveInt
    patience: PositiveInt
    threads: PositiveInt
    pruner: Pruner
    fixed: dict[str, int] = Field(default_factory=dict)
    search_space: dict[str, SearchDim]


class TrainMultitaskParams(Section):
    """`train_multitask`: the multi-task pricing net (docs/pricing.md)."""

    split: Split
    exclude_features: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    tuning: MultitaskTuning
    ece_bins: PositiveInt
    targets: Targets


# --- evaluate_pricing -------------------------------------------------------------------------


class Objective(Section):
    """`evaluate_pricing.objective`."""

    grid: list[float] = Field(min_length=3, max_length=3, description="lo, hi, step of the price ratios")
    value: Literal["revenue", "margin"]
    mu: Literal["auto"] | Annotated[float, Field(ge=0)]
    fair_ratio: Annotated[float, Field(gt=0)]
    min_margin: float | None
    guardrail_lambda: Annotated[float, Field(ge=0)] | None = None


class MuSelection(Section):
    """`evaluate_pricing.mu_selection`."""

    method: Literal["ope", "model", "simulator"] = Field(
        description="ope: off-policy estimates on validation logs; model: predicted leakage; simulator: research only"
    )
    leakage_target: float
    candidates: list[Annotated[float, Field(ge=0)]] | None = None
    bound: Literal["ci_low", "estimate"] = Field(
        "ci_low", description="the target must hold at the low end of the 95 % bootstrap interval, or by the estimate"
    )


class Ope(Section):
    """`evaluate_pricing.ope`: off-policy estimates from the randomised-price experiment."""

    logged_ratio: Pair = Field(description="the experiment's design: each session's multiplier ~ U(lo, hi)")
    bandwidth: Annotated[float, Field(gt=0)] = Field(description="half-width of the box kernel on the price ratio")
    bootstrap: PositiveInt = Field(description="Poisson bootstrap replicates over sessions for the 95 % intervals")
    seed: int = Field(description="random seed of the bootstrap")

    @model_validator(mode="after")
    def _pairs(self) -> Ope:
        _ordered(self.logged_ratio, "logged_ratio")
        return self


class Guardrail(Section):
    """`evaluate_pricing.guardrail`."""

    reference: Literal["fixed", "rules"]
    tolerance: Annotated[float, Field(ge=0)]


class DetectorMarkup(Section):
    """`evaluate_pricing.detector_markup`."""

    threshold: Share
    ratio: Annotated[float, Field(gt=0)]
    model: str


class EvaluatePricingParams(Section):
    """`evaluate_pricing`: the pricing replay and its policies."""

    objective: Objective
    mu_selection: MuSelection
    agent_calibration: Literal["isotonic", "none"] = Field(
        "isotonic", description="recalibrate the network's P(agent) on the validation cohorts before pricing"
    )
    ope: Ope | None = None
    guardrail: Guardrail
    fixed_ratio: Annotated[float, Field(gt=0)]
    rules: dict[str, float]
    detector_markup: DetectorMarkup
    velocity_feature: str
    demand_feature: str
    sweep_mu: list[Annotated[float, Field(ge=0)]]
    ece_bins: PositiveInt
    targets: Targets


# --- distill, explain ---------------------------------------------------------------------------


class DistillParams(Section):
    """`distill`: the readable tree distilled from the multi-task pricer (docs/distill.md)."""

    depth: Annotated[int, Field(ge=1, le=5)] = Field(description="the shipped tree's maximum depth")
    depths: list[Annotated[int, Field(ge=1, le=5)]] = Field(description="depths of the reported trade-off")
    dagger_rounds: NonNegInt = Field(description="rounds of rollout under the tree, teacher relabelling, refit")
    min_samples_leaf: PositiveInt = Field(description="no rule for fewer training decisions")
    use_p_agent: bool = Field(description="the tree may read the network's P(agent)")
    exclude_features: list[str] = Field(default_factory=list, description="request features the tree must not read")
    weight: Literal["base_price", "none"] = Field(description="sample weight of a decision")
    seed: int = Field(description="the tree's random state")


class ExplainParams(Section):
    """`explain`: SHAP on the detector, integrated gradients on the multi-task network."""

    n_sessions: PositiveInt = Field(description="most confident agents and false positives explained one by one")
    top_reasons: PositiveInt = Field(description="reasons per explained session")
    timed_requests: PositiveInt = Field(description="per-request explain() calls timed")
    ig_rows: PositiveInt = Field(description="test decisions the integrated gradients run on")
    ig_steps: PositiveInt = Field(description="Riemann steps of the integrated gradients")


# --- promote ----------------------------------------------------------------------------------


class Gate(Section):
    """A registered model's promotion gate."""

    minimum: dict[str, float] = Field(default_factory=dict)
    maximum: dict[str, float] = Field(default_factory=dict)
    tolerance: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    replace_when: list[str] = Field(
        default_factory=list,
        description="metrics that, above 0 on the champion, let any challenger passing the floors replace it",
    )
    paired_minimum: dict[str, float] = Field(
        default_factory=dict, description="floors on the paired challenger-vs-champion evidence (with a champion)"
    )
    paired_maximum: dict[str, float] = Field(
        default_factory=dict, description="ceilings on the paired challenger-vs-champion evidence (with a champion)"
    )


class PromoteModel(Section):
    """`promote.<model>`: one registered model's evaluation set and gate."""

    eval_set: str
    ece_bins: PositiveInt | None = Field(None, description="equal-count bins of its ECE metrics (models that have one)")
    gate: Gate


# --- simulate ---------------------------------------------------------------------------------


class SimulateWorld(Section):
    """`simulate.world`: the generator's world the env reproduces (must equal `generate`)."""

    sessions_per_hour: Annotated[float, Field(gt=0)] = Field(description="mean session arrival rate")
    agent_share: Share = Field(description="share of sessions run by agents")
    humans: dict[str, Annotated[float, Field(ge=0)]] = Field(description="human kind -> relative weight")
    agents: dict[str, Annotated[float, Field(ge=0)]] = Field(description="agent family -> relative weight")
    human_sensitivity: float = Field(description="demand slope in price for people")
    agent_sensitivity: float = Field(description="demand slope in price for agents")


class SimulateEnv(Section):
    """`simulate.env`: episode, reward, price range and stock of DynamicPricingEnv."""

    hours: PositiveInt = Field(description="steps (hours of traffic) per episode")
    leakage_weight: Annotated[float, Field(ge=0)] = Field(description="weight of margin leaked to agents in the reward")
    value: Literal["revenue", "margin"] = Field("revenue", description="what the reward counts before the penalty")
    fair_ratio: Annotated[float, Field(gt=0)] = Field(description="leakage counts agent purchases below this x list")
    lo: Annotated[float, Field(gt=0)] = Field(description="lowest price multiplier")
    hi: Annotated[float, Field(gt=0)] = Field(description="highest price multiplier")
    grid_step: Annotated[float, Field(gt=0)] = Field(description="the discrete variant's grid step")
    stock_hours: Annotated[float, Field(gt=0)] = Field(description="stock capacity, hours of sales at list price")
    restock_rate: Annotated[float, Field(ge=0)] = Field(description="restock per hour, x hourly sales at list price")

    @model_validator(mode="after")
    def _range(self) -> SimulateEnv:
        _ordered([self.lo, self.hi], "lo, hi")
        return self


class SimulateSweep(Section):
    """`simulate.sweep`: the counterfactual agent-share sweep."""

    agent_share: list[Share] = Field(min_length=1, description="agent shares to run every policy at")
    seeds: PositiveInt = Field(description="episodes per policy and share")


class PPOParams(Section):
    """`simulate.ppo`: the PPO agents' budget and Optuna search."""

    total_steps: PositiveInt = Field(description="env steps per agent for the final training")
    n_envs: PositiveInt = Field(description="env copies in SB3's vectorised env")
    seed: int
    threads: PositiveInt = Field(description="torch threads")
    n_trials: NonNegInt = Field(description="Optuna trials (0: SB3's defaults + `fixed`)")
    trial_steps: PositiveInt = Field(description="env steps per trial")
    tuning_seeds: list[int] = Field(min_length=1, description="episodes that score a trial (never the table's)")
    fixed: dict[str, int] = Field(default_factory=dict, description="PPO arguments not searched")
    search_space: dict[str, SearchDim] = Field(default_factory=dict)


class SimulateParams(Section):
    """`simulate`: the pricing env, PPO, calibration and counterfactuals (docs/simulate.md)."""

    world: SimulateWorld
    env: SimulateEnv
    seeds: PositiveInt = Field(description="episodes per policy in the table (seeds 0..n-1)")
    sweep: SimulateSweep
    rules: dict[str, float] = Field(description="the surge and elasticity baselines' rules")
    ppo: PPOParams


# --- the file ---------------------------------------------------------------------------------


class ShiftWorldParams(Section):
    """A small generated world with another agent mix: train_detector grades its share estimate on it."""

    seed: int = Field(description="generator seed (differs from generate.seed)")
    days: Annotated[float, Field(gt=0)] = Field(description="days of traffic")
    mix: MixParams = Field(description="the shifted visitor mix")


class ImageParams(Section):
    """`make image`: the OCI image built from the Bento (docs/deploy.md)."""

    repository: str = Field(min_length=1, description="image name; its tag is the Bento version")
    base: str = Field(
        min_length=1,
        description="'local': a Debian base made here with debootstrap and buildah; else an image reference to build FROM",
    )
    suite: str = Field(min_length=1, description="Debian suite of the local base")
    mirror: str = Field(min_length=1, description="Debian mirror debootstrap reads")
    packages: list[str] = Field(min_length=1, description="packages of the local base beyond minbase")
    keep: PositiveInt = Field(description="images of `repository` kept in the local store; older ones are removed")


class LoadBalancerParams(Section):
    """HAProxy in front of the replicas: health checks, retries of idempotent requests, keep-alive."""

    check_interval_ms: PositiveInt = Field(description="GET /readyz on every replica this often")
    check_timeout_ms: PositiveInt = Field(description="a health check not answered within this failed")
    server_maxconn: PositiveInt = Field(
        description="requests at once on one replica; more wait in HAProxy's queue, so a busy replica still answers checks"
    )
    queue_timeout_s: PositiveInt = Field(description="a request waiting longer than this in HAProxy's queue gets 503")
    fall: PositiveInt = Field(description="failed checks that take a replica out")
    rise: PositiveInt = Field(description="passed checks that put it back")
    retries: NonNegInt = Field(description="retries of a failed GET/HEAD (each on another replica)")
    connect_timeout_ms: PositiveInt = Field(description="connecting to a replica")
    server_timeout_s: PositiveInt = Field(description="a replica's answer (BentoML's own timeout is 10 s)")
    client_keepalive_s: PositiveInt = Field(description="idle keep-alive towards clients")
    server_idle_s: PositiveInt = Field(
        description="idle connections to replicas are closed within this (pool-purge-delay); below keepalive_s"
    )
    drain_timeout_s: PositiveInt = Field(
        description="a replica taken out of rotation finishes its requests within this"
    )
    trusted_upstreams: list[str] = Field(
        description="addresses/CIDRs in front of the LB (CDN, TLS terminator) whose last X-Forwarded-For hop is the client"
        " address the edge's per-address limit counts; empty: the TCP peer is the client",
    )
    limit_table_size: PositiveInt = Field(
        description="entries of each edge rate-limit stick table (addresses, sessions seen in the last 10 s)"
    )

    @field_validator("trusted_upstreams")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return value


class KubernetesParams(Section):
    """The generated Kubernetes manifests (sizes come from metrics/deploy.json when it has them)."""

    namespace: str = Field(min_length=1)
    rps_per_pod: PositiveInt = Field(
        description="requests/s one pod is sized for: its CPU request = this x CPU per request"
    )
    min_replicas: PositiveInt
    max_replicas: PositiveInt
    target_cpu_percent: Annotated[int, Field(ge=10, le=100)] = Field(description="HorizontalPodAutoscaler target")
    memory_mi: PositiveInt = Field(description="memory request of a pod when no measured replica RSS is known")

    @model_validator(mode="after")
    def _bounds(self) -> KubernetesParams:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self


class DeployParams(Section):
    """Containers, replicas behind a load balancer, rollout, manifests (docs/deploy.md)."""

    image: ImageParams
    replicas: PositiveInt = Field(description="replicas behind the load balancer")
    workers: PositiveInt = Field(description="worker processes per replica (PHANTOM_WORKERS)")
    keepalive_s: PositiveInt = Field(description="the service's keep-alive timeout (PHANTOM_KEEPALIVE_S)")
    lb: LoadBalancerParams
    kubernetes: KubernetesParams

    @model_validator(mode="after")
    def _keepalive(self) -> DeployParams:
        if self.keepalive_s <= max(self.lb.server_idle_s, self.lb.server_timeout_s):
            raise ValueError(
                f"keepalive_s {self.keepalive_s} must exceed lb.server_idle_s and lb.server_timeout_s "
                "(a server closing an idle connection the proxy still pools is a 502)"
            )
        return self


class Params(Section):
    """The whole params.yaml."""

    generate: GenerateParams
    ingest: IngestParams
    validate_: ValidateParams = Field(alias="validate")
    features: FeaturesParams
    shift_world: ShiftWorldParams
    train_detector: TrainDetectorParams
    train_multitask: TrainMultitaskParams
    evaluate_pricing: EvaluatePricingParams
    distill: DistillParams
    explain: ExplainParams
    promote: dict[str, PromoteModel]
    monitor_reference: ReferenceConfig
    monitor: MonitorConfig
    simulate: SimulateParams | None = None
    ab_report: ReadoutConfig = Field(default_factory=ReadoutConfig)
    deploy: DeployParams | None = None


class ParamsError(ValueError):
    """params.yaml breaks the schema: one line per problem, each naming the key path and the rule."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "missing": "missing (required)",
}


def _shown(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _known_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """The keys a mapping at `path` (below `model`) may hold, for 'did you mean' hints."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    from typing import get_args

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def explain(error: ValidationError, source: str = "params.yaml") -> list[str]:
    """One line per problem: `<file>: <key.path>: <rule>, got <value>`."""
    lines = []
    for err in error.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc if not (isinstance(p, str) and "[" in p)) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _known_keys(Params, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})" if known else ""
            lines.append(f"{source}: {path}: unknown key{hint}")
        elif kind == "missing":
            lines.append(f"{source}: {path}: missing (required)")
        else:
            rule = _EXPECTED.get(kind) or err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {path}: {rule}, got {_shown(err.get('input'))}")
    return lines


def parse(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a loaded params mapping; raises ParamsError naming every bad key."""
    if not isinstance(raw, dict):
        raise ParamsError([f"{source}: expected a mapping of sections at the top level, got {_shown(raw)}"])
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(explain(exc, source)) from None


def load(path: Path | str) -> tuple[dict[str, Any], Params]:
    """Read and validate params.yaml: (the raw mapping, the typed model); ParamsError on any problem."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParamsError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError([f"{path}: not valid YAML{where}: {problem}"]) from None
    return raw, parse(raw, str(path))
