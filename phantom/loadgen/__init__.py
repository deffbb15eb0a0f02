"""The load generator: simulated visitors (the world of `phantom.simulate`) browsing and buying through the live service.

It sits above both the world and the service it drives, so neither imports the other; like the
simulator it knows the truth (who buys at which price), so no production package imports it
(tests/unit/test_layering.py holds both).
"""
