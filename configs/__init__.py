"""Experiment configs: `default.py` is the entry, one file per method beside it."""
