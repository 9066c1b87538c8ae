"""How many threads torch should use for local models: the cores actually free, not every core the machine has.

torch's intra-op threads wait on each other at every operation; when another process holds one of them, each
operation waits for the slowest thread. With one other CPU-bound process on 2 cores, 2 threads made judging 5x and
generation 10x slower than 1 (issue 16), so the count follows the cores free at the start of a stage.
"""

from __future__ import annotations

import os
import time

from rewards.log import get_logger

log = get_logger(__name__)

ENV_VAR = "COUNSEL_ALIGN_THREADS"
_logged: set[int] = set()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def own_load() -> float:
    """This process's share of the load average: the cores it used on average since it started (at most 1 min).

    The 1-minute load average counts our own threads too (imports, a previous stage in the same process).
    """
    try:
        import psutil

        process = psutil.Process()
        elapsed = max(1e-3, time.time() - process.create_time())
        times = process.cpu_times()
        return (times.user + times.system) / elapsed
    except Exception:  # noqa: BLE001 - no psutil or no /proc: assume we were idle
        return 0.0


def free_cores(usable: int, load: float, own: float = 0.0) -> int:
    """Cores free for us: the usable ones minus those other processes keep busy, at least 1.

    ``load`` is the 1-minute load average (runnable tasks on the machine), ``own`` our part of it.
    """
    others = max(0.0, load - own)
    return max(1, min(usable, usable - round(others)))


def choose_threads(setting: str | int | None = "auto", usable: int | None = None, load: float | None = None,
                   own: float | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The thread count and why: ``$COUNSEL_ALIGN_THREADS``, else ``setting`` (N or ``auto``), else the free cores."""
    from rewards.errors import UserError

    env = os.environ if env is None else env
    source, value = ("env", env[ENV_VAR]) if env.get(ENV_VAR, "").strip() else ("config", setting)
    name = ENV_VAR if source == "env" else "threads"
    if value is None or str(value).strip().lower() == "auto":
        usable = usable_cores() if usable is None else usable
        load = os.getloadavg()[0] if load is None else load
        own = own_load() if own is None else own
        count = free_cores(usable, load, own)
        return count, f"auto: {usable} usable cores, load {load:.2f} of which ours {own:.2f}"
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: {value!r} is not a thread count; use auto or a positive integer") from None
    if count < 1:
        raise UserError(f"{name}: {count} must be a positive integer or auto")
    return count, f"{name}={count}"


def apply_threads(setting: str | int | None = "auto") -> int:
    """Set torch's intra-op thread count for this process and log the choice once per count."""
    import torch

    count, reason = choose_threads(setting)
    torch.set_num_threads(count)
    if count not in _logged:
        _logged.add(count)
        log.info(f"torch threads: {count} ({reason})")
    return count
