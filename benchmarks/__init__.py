"""Benchmarks: each module measures one cost and prints its ratios as the last lines."""
