"""The client against a server requiring tokens: scopes, and the URL and token from the environment."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lr_references import FAST, STEP, approx, torch_lrs
from lrtower import APIError, Client, Forbidden, Unauthorized
from lrtower_server.core.auth import Tokens
from lrtower_server.core.config import Settings
from lrtower_server.db.engine import make_engine
from servers import Server


@pytest.fixture
def secured(start_server: Callable[..., Server], database_url: str) -> tuple[str, str, str]:
    """A server requiring tokens: its URL, a read token and a write token (named "trainer")."""
    url = start_server("--auth").url
    engine = make_engine(Settings(database_url=database_url))
    try:
        tokens = Tokens(engine)
        return (
            url,
            tokens.create("dashboard", "read", actor="test")[1],
            tokens.create("trainer", "write", actor="test")[1],
        )
    finally:
        engine.dispose()


def test_auth(secured: tuple[str, str, str]) -> None:
    url, reader, writer = secured
    with Client(url, retry=FAST) as anonymous:
        with pytest.raises(Unauthorized) as unauthorized:
            anonymous.create_run("secure", STEP, lr=0.1)
        assert unauthorized.value.status == 401 and isinstance(unauthorized.value, APIError)
        with pytest.raises(Unauthorized):
            anonymous.list_runs()
        assert anonymous.ready() is True  # readiness needs no token
    with Client(url, "lrt_wrong", retry=FAST) as wrong, pytest.raises(Unauthorized):
        wrong.list_runs()
    with Client(url, reader, retry=FAST) as dashboard:
        with pytest.raises(Forbidden) as forbidden:
            dashboard.create_run("secure", STEP, lr=0.1)
        assert forbidden.value.status == 403 and "read" in forbidden.value.detail
    with Client(url, writer) as trainer:
        assert trainer.create_run("secure", STEP, lr=0.1).state == "live"
        assert trainer.scale("secure", 0.5).effective_step == 0
    with Client(url, reader) as dashboard:
        with pytest.raises(Forbidden) as above:  # serving a new step is a consumer's, not a reader's
            dashboard.lr("secure", 4)
        assert "write" in above.value.detail and above.value.problem["high_water"] == -1
        assert dashboard.curve("secure", 4, 5).lr[0] == approx(torch_lrs(STEP, [0.1], 5)[4][0] * 0.5)
    with Client(url, writer) as trainer:
        trainer.lr("secure", 4)
    with Client(url, reader) as dashboard:
        assert dashboard.lr("secure", 4).lr == approx(torch_lrs(STEP, [0.1], 5)[4][0] * 0.5)
        with pytest.raises(Forbidden):
            dashboard.scale("secure", 0.5)
        assert {e.actor for e in dashboard.events("secure").events} == {"trainer"}
        assert dashboard.verify("secure").ok


def test_url_and_token_from_the_environment(
    secured: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, reader, writer = secured
    monkeypatch.setenv("LRTOWER_URL", url + "/")
    monkeypatch.setenv("LRTOWER_TOKEN", writer)
    with Client() as tower:
        assert tower.url == url
        tower.create_run("env", STEP, lr=0.1)
        tower.scale("env", 0.5, reason="from the environment")
        assert [e.actor for e in tower.events("env").events] == ["trainer", "trainer"]
    # Arguments win over the environment.
    with Client(token=reader, retry=FAST) as tower, pytest.raises(Forbidden):
        tower.scale("env", 0.5)
    monkeypatch.delenv("LRTOWER_TOKEN")
    with Client(retry=FAST) as tower, pytest.raises(Unauthorized):
        tower.get_run("env")
