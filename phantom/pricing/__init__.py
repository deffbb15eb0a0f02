"""phantom.pricing: the multi-task network, the agent-aware price objective, policies and their replay.

Modules (nothing is imported here; `multitask` and `pyfunc_model` need torch):
    data        split by session and time, per-view purchase labels, the input scaler
    multitask   the PyTorch network (agent head, monotone per-type purchase curves), training, bundles
    tuning      the Optuna search over the network
    package     the network as an MLflow pyfunc model (pyfunc_model.py is the model's code)
    objective   the price decision: score every grid price at once, guardrail and leakage multipliers
    policies    fixed, the seed's rules, detector markup, the optimiser, the type oracle
    evaluate    replay prices against the ground truth, in expectation
    replay      the whole evaluation protocol (fit on validation, price and score the test decisions)
    plots       the figures
    distill     the distilled pricer: a depth <= 5 tree as JSON, priced with numpy (what a service loads)
    dagger      fitting it DAgger-style on the pricer's decisions (rollout of the states a policy visits)
    distill_report, rules_text   the distill stage's trade-off, grading gaps, rules text and tree plot
    rules_package, rules_pyfunc, rules_gate   the tree as MLflow pyfunc `pricing-rules` and its gate
    attribution integrated gradients on the network's agent head and purchase curve

See docs/pricing.md and docs/distill.md.
"""
