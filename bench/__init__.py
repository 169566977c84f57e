"""Benchmarks, run by `make bench` (never by `make test`). Each prints ratios against raw Temporal measured in the
same run on the same dev server, so the figures mean the same on any machine."""
