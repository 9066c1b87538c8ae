"""The thread count for local models follows the cores free, and an env var or config value overrides it."""

from __future__ import annotations

import pytest

from rewards.errors import UserError
from rewards.threads import ENV_VAR, choose_threads, free_cores


@pytest.mark.parametrize(("usable", "load", "own", "expected"), [
    (2, 0.1, 0.0, 2),    # a quiet machine: every core
    (2, 1.0, 0.0, 1),    # one other CPU-bound process takes a core
    (2, 1.0, 1.0, 2),    # the load is our own earlier work, not someone else's
    (2, 6.3, 0.2, 1),    # six engineers on two cores: never below one
    (16, 3.4, 0.4, 13),  # 3 other busy processes
    (4, 0.4, 0.9, 4),    # our share can exceed the average that lags behind it: never above the usable cores
])
def test_free_cores_subtracts_the_load_of_other_processes(usable, load, own, expected):
    assert free_cores(usable, load, own) == expected


def test_auto_uses_the_free_cores_and_says_why():
    count, reason = choose_threads("auto", usable=2, load=1.1, own=0.05, env={})
    assert count == 1 and "2 usable cores" in reason and "load 1.10" in reason


def test_a_number_in_the_config_or_the_env_var_wins():
    assert choose_threads(3, usable=2, load=5.0, own=0.0, env={})[0] == 3
    assert choose_threads("auto", usable=2, load=5.0, own=0.0, env={ENV_VAR: "2"})[0] == 2
    assert choose_threads(1, usable=8, load=0.0, own=0.0, env={ENV_VAR: "auto"})[0] == 8


@pytest.mark.parametrize("bad", ["many", 0, "-2"])
def test_a_bad_count_is_a_user_error_naming_the_key(bad):
    with pytest.raises(UserError, match="threads"):
        choose_threads(bad, env={})
    with pytest.raises(UserError, match=ENV_VAR):
        choose_threads("auto", env={ENV_VAR: str(bad)})
