"""Benchmarks: each scenario measured side by side with its baseline in one run.

Every module here exposes ``run(quick: bool) -> list[Row]``; ``python -m bench`` runs them
all and prints one table. Ratios, not absolute times, are the figures to compare.
"""
