"""counsel-align library. ``rewards.load_reward`` is imported lazily (it pulls in torch)."""


def __getattr__(name: str):
    if name == "load_reward":
        from rewards.reward_io import load_reward

        return load_reward
    raise AttributeError(f"module 'rewards' has no attribute {name!r}")
