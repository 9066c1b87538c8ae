"""The library's public API: every name in ``rewards.__all__`` resolves, and ``import rewards`` stays light."""

import subprocess
import sys

import pytest

import rewards
from tests.conftest import PROJECT_ROOT


def test_every_public_name_resolves():
    for name in rewards.__all__:
        assert getattr(rewards, name) is not None, name
    from rewards import load_reward
    from rewards.reward_models.io import load_reward as defined

    assert load_reward is defined


def test_both_lazy_packages_resolve_their_names_and_refuse_others():
    import rewards.judges

    for package in (rewards, rewards.judges):
        assert all(getattr(package, name) is not None for name in package.__all__)
        with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"):
            package.nope  # noqa: B018


def test_import_rewards_does_not_pull_in_torch():
    probe = "import sys, rewards, rewards.judges, rewards.judges.base; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
