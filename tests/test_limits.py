"""The workers' limits as pure decisions: body size, receive budget, websocket unmasking."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.eventlet_websocket import GuardedWebSocket
from cluster.config import ConfigError, make_settings
from workers.limits import HttpLimits, ReceiveBudget, body_too_large

from eventlet.websocket import RFC6455WebSocket  # noqa: I001 (after workers: it hushes eventlet)

LIMITS = HttpLimits(header_timeout=60, keepalive_timeout=75, max_body=1000)


@pytest.mark.parametrize("method, path, length, refused", [
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1001", True),
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1000", False),
    ("POST", "/socket.io/", None, False),
    ("POST", "/socket.io/", "lots", False),
    ("GET", "/socket.io/", "5000", False),
    ("POST", "/upload", "5000", False),
])
def test_only_an_engineio_post_over_the_limit_is_refused(method, path, length, refused):
    assert body_too_large(method, path, length, LIMITS) is refused


def test_the_engineio_path_is_the_apps():
    limits = HttpLimits(60, 75, 1000, engineio_path="/rt/")
    assert body_too_large("POST", "/rt/?sid=x", "2000", limits)
    assert not body_too_large("POST", "/socket.io/?sid=x", "2000", limits)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_lets_a_burst_through_then_paces_to_its_rate():
    clock = Clock()
    budget = ReceiveBudget(rate=1000, burst=500, clock=clock)
    assert budget.charge(500) == 0
    assert budget.charge(250) == pytest.approx(0.25)
    clock.now += 0.25
    assert budget.charge(0) == 0
    clock.now += 10  # a quiet spell saves up no more than the burst
    assert budget.charge(500) == 0
    assert budget.charge(1000) == pytest.approx(1.0)


def test_a_budget_needs_a_positive_rate_and_burst():
    with pytest.raises(ValueError):
        ReceiveBudget(rate=0, burst=10)


@given(st.binary(max_size=300), st.tuples(*[st.integers(0, 255)] * 4), st.integers(0, 7))
def test_fast_unmasking_matches_eventlets(data, mask, offset):
    assert GuardedWebSocket._apply_mask(data, mask, offset=offset) == \
        RFC6455WebSocket._apply_mask(data, mask, offset=offset)
    assert GuardedWebSocket._apply_mask(data, mask, length=len(data) // 2, offset=offset) == \
        RFC6455WebSocket._apply_mask(data, mask, length=len(data) // 2, offset=offset)


@pytest.mark.parametrize("option", ["header_timeout", "keepalive_timeout", "websocket_rate"])
def test_the_limits_must_be_positive(option):
    with pytest.raises(ConfigError, match=option.replace("_", " ")):
        make_settings("app:sio", **{option: 0})
