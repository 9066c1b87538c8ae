"""Reward models: pair data, Bradley-Terry training (one or many heads), scoring, export/load, evaluation."""
