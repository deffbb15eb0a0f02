"""MLflow plumbing shared by every training stage: tracking, registry aliases, the promotion gate.

Nothing here imports mlflow at import time. The store is env `MLFLOW_TRACKING_URI`, else
`sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlruns/<experiment>` (any cwd works).
One experiment per model, named like the registered model (e.g. `agent-detector`). The model
registry follows the tracking URI (set `MLFLOW_REGISTRY_URI` only to split them).

    from phantom.registry import models, promotion, tracking

    # training stage
    with tracking.parent_run("agent-detector", params=params, inputs=[features_path]) as run:
        study.optimize(objective, callbacks=[tracking.trial_callback("val_logloss")])  # nested runs
        tracking.log_metrics(metrics)            # nested dicts flattened: {"recall": {"a": 1}} -> recall_a
        tracking.log_figure(fig, "roc.png")      # artifact plots/roc.png
        info = mlflow.pyfunc.log_model(name="model", ..., signature=..., input_example=...)
        version = models.register(info.model_uri, "agent-detector")   # new version, alias challenger

    # promote stage (the gate is promotion.decide, a pure function of two metric dicts)
    gate = promotion.GateConfig.from_params(params["gate"])
    outcome = promotion.promote("agent-detector", evaluate=lambda uri: metrics_of(uri), config=gate)
    report = promotion.render_report(outcome, gate)

tracking:  tracking_uri, configure, experiment, parent_run, log_params, log_metrics, log_figure,
           log_inputs (md5 of input files, as dvc.lock records them), git_state, trial_callback
models:    register, version_by_alias, champion_versions, set_alias, tag_version, tag_model, model_tags,
           alias_uri, version_uri, CHALLENGER, CHAMPION
promotion: GateConfig, decide (pure), promote (registry I/O), render_report, Outcome
annotate:  lineage_tags, gate_tags, verdict_line (pure); describe_new_version, record_decision
           (what a person sees on a version in the UI: lineage, verdict, figures, report)
server:    make mlflow-server: ensure_database, start_server / tracking_server (own process group)
migrate:   the embedded SQLite store -> a server's PostgreSQL store (ids, aliases, artifacts kept)
"""
