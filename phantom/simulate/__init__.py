"""The simulator: the traffic population model and its hidden truth, the wire stream, the type oracle and truth replay.

Only `simulate` may know the truth. Production packages (events, quality, features, detect, pricing,
registry, monitor, serve) never import it: tests/unit/test_layering.py holds that.
"""
