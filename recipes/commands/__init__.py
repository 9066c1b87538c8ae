"""Commands that are not pipeline stages: preview, plan, runs, principles, score, pull/push, feedback, ..."""
