"""The rank-0 logger and the one CLI error handler."""

import pytest

from recipes._entry import handle_errors, pop_verbosity
from rewards.errors import UserError
from rewards.log import get_logger, set_verbosity


@pytest.fixture(autouse=True)
def default_verbosity():
    yield
    set_verbosity()


def test_progress_from_rank_zero_only_warnings_from_every_rank(monkeypatch, capsys):
    log = get_logger("tests.log")
    monkeypatch.setenv("RANK", "1")
    log.info("generate: running")
    log.warning("warning: stale lock")
    out, err = capsys.readouterr()
    assert out == "" and err == "[counsel-align] warning: stale lock\n"
    monkeypatch.setenv("RANK", "0")
    log.info("generate: running")
    assert capsys.readouterr().out == "[counsel-align] generate: running\n"


def test_quiet_and_verbose_flags_set_the_level(capsys):
    log = get_logger("tests.log")
    assert pop_verbosity(["run=x", "--quiet"]) == ["run=x"]
    log.info("hidden")
    log.warning("shown")
    out, err = capsys.readouterr()
    assert out == "" and "shown" in err
    assert pop_verbosity(["-v"]) == []
    log.debug("detail")
    assert capsys.readouterr().out == "[counsel-align] detail\n"


def test_one_error_handler_for_every_command(capsys):
    def fails() -> None:
        raise UserError("judge.base_url: not set;\n  set it")

    assert handle_errors("feedback", fails) == 2
    assert capsys.readouterr().err == "counsel-align feedback: error: judge.base_url: not set; set it\n"
    assert handle_errors("runs", lambda: None) == 0
