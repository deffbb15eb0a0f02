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

See docs/pricing.md.
"""
