"""The workers' limits as pure decisions: body size, receive budget, websocket unmasking."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workers.eventlet_runtime  # noqa: F401 (first: it hushes eventlet's deprecation warning)
from cluster.config import ConfigError, make_settings
from eventlet.websocket import RFC6455WebSocket
from workers.eventlet_websocket import GuardedWebSocket
from workers.limits import HttpLimits, ReceiveBudget, body_refusal

LIMITS = HttpLimits(header_timeout=60, keepalive_timeout=75, max_body=1000)


@pytest.mark.parametrize("method, path, length, chunked, status", [
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1001", None, b"413"),
    ("POST", "/socket.io/?EIO=4&transport=polling&sid=x", "1000", None, None),
    ("POST", "/socket.io/", None, None, None),
    ("POST", "/socket.io/", None, "chunked", b"411"),
    ("POST", "/socket.io/", "lots", None, None),
    ("GET", "/socket.io/", "5000", None, None),
    ("POST", "/upload", "5000", None, None),
    ("POST", "/upload", None, "chunked", None),
])
def test_only_an_engineio_post_over_the_limit_or_without_a_length_is_refused(
        method, path, length, chunked, status):
    answer = body_refusal(method, path, length, chunked, LIMITS)
    assert (answer and answer[9:12]) == status
    if answer:
        assert b"Connection: close" in answer


def test_the_engineio_path_is_the_apps():
    limits = HttpLimits(60, 75, 1000, engineio_path="/rt/")
    assert body_refusal("POST", "/rt/?sid=x", "2000", None, limits)
    assert not body_refusal("POST", "/socket.io/?sid=x", "2000", None, limits)


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
