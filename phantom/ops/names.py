"""The metric names the rules and the dashboard query, in one place.

Request metrics are the service's HTTP metrics (bounded by route template); domain metrics are
phantom.serve.domain_metrics'; drift metrics are the monitor stage's (phantom.monitor.export).
"""

from __future__ import annotations

# HTTP request metrics of the service, by route template (issue 25: phantom/serve/http_metrics.py;
# BentoML's own request metrics are switched off in the Bento)
REQUESTS_TOTAL = "phantom_http_requests_total"
REQUEST_SECONDS = "phantom_http_request_duration_seconds"
ROUTE_LABEL = "route"
STATUS_LABEL = "status"
PRICE_ROUTE = "/api/{mode}/price/{product_id}"
API_ROUTES = '"/api/.*"'  # a regex over ROUTE_LABEL values: the API, not /version, /status or health checks

# domain metrics (phantom.serve.domain_metrics.NAMES)
DECISIONS = "phantom_decisions_total"
P_AGENT = "phantom_p_agent"
PRICE_RATIO = "phantom_price_ratio"
DEGRADED = "phantom_degraded_total"
STORE_UP = "phantom_store_up"
STORE_TRANSITIONS = "phantom_store_transitions_total"
INGEST_EVENTS = "phantom_ingest_events_total"
LOG_DROPPED = "phantom_decision_log_dropped_total"
PUBLISHER_DROPPED = "phantom_publisher_dropped_total"
MODEL_INFO = "phantom_model_info"

# the monitor stage's drift metrics (pushed to a Pushgateway, or a textfile)
DRIFT_WINDOW_FAILED = "phantom_drift_window_failed"
DRIFT_COLUMN_SCORE = "phantom_drift_column_score"
DRIFT_COLUMN_THRESHOLD = "phantom_drift_column_threshold"
DRIFT_DRIFTED_SHARE = "phantom_drift_drifted_share"
DRIFT_AGENT_SHARE = "phantom_drift_agent_share_estimate"
DRIFT_LAST_RUN = "phantom_drift_last_run_timestamp_seconds"
