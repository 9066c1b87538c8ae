"""Candidate counselor replies and client messages: local responders, OpenAI-compatible endpoints, simulated clients."""
