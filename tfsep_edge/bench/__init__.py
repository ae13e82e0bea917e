"""Latency benchmarks: one timing harness, the machine record, reports and cross-machine compares
(no torch at import)."""
