"""Differential tests: the same configs under runc and ocirun, verdicts and observations compared.

harness.py (bundles, runs, cleanup), normalize.py (observations, comparison), seeds.py (the corpus),
strategies.py (hypothesis mutations), known_differences.py (runc 1.1.5 vs runc 1.2+ allow-list),
test_differential.py (pytest, bounded), __main__.py (long runs: python -m tests.differential).
"""
