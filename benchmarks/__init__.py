"""Benchmarks, the control lab's driver and the result records (never collected by pytest)."""
