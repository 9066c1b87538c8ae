"""Patches to TRL, in one place, each applied only to the TRL versions it was checked against.

A patch changes what a step costs, never what it computes; ``benchmarks/README.md`` says why each exists and how it
was measured. On an unverified TRL version a patch is skipped with a one-line warning (slower, same result).
"""

from __future__ import annotations

import warnings

# TRL versions whose ``trl.trainer.utils._use_triton`` rule was read and the patch below checked against.
VERIFIED_TRL_VERSIONS = ("1.16.0",)


def trl_version() -> str:
    import trl

    return trl.__version__


def score_labelled_positions_only_on_eager_devices() -> bool:
    """Make TRL's compact scoring rule (``trl.trainer.utils._use_triton``) also true for CPU and MPS devices.

    TRL's fused LM head scores only the completion positions (the ones with a label) on Triton devices, but on
    every other device it projects *every* position -- prompt and padding included -- through the vocabulary,
    because on compiled backends (XLA/Neuron) a varying number of positions would recompile the kernel. Eager CPU
    does not recompile, so there it may take the compact path too. The per-token log-probabilities are the same;
    only the wasted projections go away. Returns whether the rule is patched now.
    """
    import trl.trainer.utils as trl_utils

    version = trl_version()
    current = getattr(trl_utils, "_use_triton", None)
    if version not in VERIFIED_TRL_VERSIONS or current is None:
        warnings.warn(f"TRL {version}: fused-LM-head patch not verified for this version (verified: "
                      f"{', '.join(VERIFIED_TRL_VERSIONS)}); DPO on CPU scores every position (slower, same result)",
                      stacklevel=3)
        return False
    if getattr(current, "counsel_align_patched", False):
        return True

    def compact_on_eager_devices(device) -> bool:
        return device.type in ("cpu", "mps") or current(device)

    compact_on_eager_devices.counsel_align_patched = True
    compact_on_eager_devices.__wrapped_rule__ = current
    trl_utils._use_triton = compact_on_eager_devices
    return True
