"""Benchmarks: measured speed, never asserted in tests."""
