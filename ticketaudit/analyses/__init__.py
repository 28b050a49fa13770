"""Analyses: each takes the shared predictions and returns a frozen result with ``to_dict()``."""
