"""Evaluating a trained policy: judged win rate, red-flag safety suite, release gate, plots."""
