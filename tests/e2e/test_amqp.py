"""AMQP (RabbitMQ, through Kombu): broadcasts cross workers and hosts, unicasts stay home.

The broker is a private RabbitMQ node started for this module (its own node name,
ports and data dir, stopped by PID). Where that node cannot boot, the machine's
RabbitMQ service on 127.0.0.1:5672 is used instead, each test on its own exchange
(the channel names it); the module is skipped only when neither answers.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import kombu
import pytest

from tests.support.brokers import RABBITMQ_SERVER, RabbitNode, broadcast_stream
from cluster.setup.broker_check import probe
from tests.support.clients import (UNICAST_APP as APP, peers, received,
                                   room_broadcast_reaches_every_worker, run, tell)
from tests.support.masters import cli
from tests.support.ports import free_port

pytestmark = pytest.mark.xdist_group("rabbitmq")  # one private node

SERVICE_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="module")
def amqp_broker():
    """(URL, node) of a private RabbitMQ node, or else (URL, None) of the machine's service.

    The node's directory is made outside pytest's temporary tree, which only root
    may enter, when the node runs as the ``rabbitmq`` user.
    """
    node = None
    workdir = Path(tempfile.mkdtemp(prefix="sticky-rabbitmq-"))
    try:
        if os.path.exists(RABBITMQ_SERVER):
            try:
                node = RabbitNode(workdir).start()
            except AssertionError as exc:
                print(f"private RabbitMQ node did not boot ({exc}); using {SERVICE_URL}")
                node = None
        if node is None:
            error = probe(SERVICE_URL, "probe")
            if error:
                pytest.skip(f"no private RabbitMQ node could boot and {error}")
            yield SERVICE_URL, None
        else:
            yield node.url, node
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def amqp_url(amqp_broker):
    """The URL of the module's RabbitMQ (each test names its own exchange: ``--channel``)."""
    return amqp_broker[0]


class ExchangeWatch:
    """A queue of the test's own on the cluster's fanout exchange: what was published."""

    def __init__(self, url: str, channel: str) -> None:
        self._connection = kombu.Connection(url)
        exchange = kombu.Exchange(channel, type="fanout", durable=False)
        self._queue = self._connection.SimpleQueue(
            kombu.Queue(f"watch.{uuid.uuid4().hex}", exchange, durable=False, auto_delete=True))

    def messages(self) -> list[dict]:
        """Everything published since the watch began, in order."""
        found = []
        while True:
            try:
                message = self._queue.get(block=True, timeout=2)
            except self._queue.Empty:
                return found
            message.ack()
            payload = message.payload
            found.append(json.loads(payload) if isinstance(payload, (str, bytes)) else payload)

    def close(self) -> None:
        self._queue.close()
        self._connection.release()


def test_room_broadcast_crosses_workers_through_amqp(start_cluster, amqp_url):
    channel = f"t-amqp-{uuid.uuid4().hex[:8]}"
    cluster = start_cluster(workers=3, args=("--adapter", amqp_url, "--channel", channel))
    listeners, senders, shouter = run(room_broadcast_reaches_every_worker([cluster.url], 12))
    assert len(listeners) >= 2
    assert senders == {shouter}


def test_two_masters_on_one_amqp_broker_are_one_cluster(start_cluster, amqp_url):
    args = ("--adapter", amqp_url, "--channel", f"t-amqp-hosts-{uuid.uuid4().hex[:8]}")
    host_a = start_cluster(workers=2, args=args)
    host_b = start_cluster(workers=2, args=args)
    listeners, _senders, _shouter = run(
        room_broadcast_reaches_every_worker([host_a.url, host_b.url], 8))
    assert listeners & host_a.worker_pids() and listeners & host_b.worker_pids()


def test_unicast_to_a_local_sid_never_reaches_the_broker(start_cluster, amqp_url):
    channel = f"t-amqp-unicast-{uuid.uuid4().hex[:8]}"
    watch = ExchangeWatch(amqp_url, channel)
    try:
        cluster = start_cluster(APP, workers=3, args=("--adapter", amqp_url, "--channel", channel))

        async def scenario():
            async with peers(cluster.url, 760) as (_everyone, groups):
                (a, b, *_), (c, *_), _third = groups
                for index in range(5):
                    await tell(a, b.sids["/"], f"local-{index}")
                assert await received(b.got("told"), "local-4") == [f"local-{i}" for i in range(5)]
                await tell(a, c.sids["/"], "remote")
                assert await received(c.got("told"), "remote") == ["remote"]
                return b.sids["/"], c.sids["/"]

        local_sid, remote_sid = run(scenario())
        published = watch.messages()
        assert [m.get("room") for m in published if m.get("method") == "emit"] == [remote_sid]
        assert local_sid not in json.dumps(published)
    finally:
        watch.close()


def test_unreachable_amqp_broker_is_one_line_without_the_password():
    url = f"amqp://guest:s3cret@127.0.0.1:{free_port()}//"
    result = cli("run", "tests.apps.chat:sio", "--bind", f"127.0.0.1:{free_port()}", "--adapter", url)
    assert result.returncode != 0
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_amqp_outage_harms_only_broadcasts_and_they_resume(start_cluster, amqp_broker):
    """The node stopped and started again under a stream of broadcasts: no emit hangs."""
    url, node = amqp_broker
    if node is None:
        pytest.skip("needs the private RabbitMQ node, to stop and start it")

    def outage() -> None:
        started = time.monotonic()
        node.kill()
        stopped = time.monotonic()
        time.sleep(5)
        node.start()
        print(f"\nnode killed after {stopped - started:.1f} s, back after "
              f"{time.monotonic() - started:.1f} s")

    cluster = start_cluster(workers=2, args=("--adapter", url,
                                             "--channel", f"t-amqp-outage-{uuid.uuid4().hex[:8]}"))
    pids_before = cluster.worker_pids()
    figures = run(broadcast_stream(cluster.url, outage, first_source=800, max_seconds=120), 240)
    print(f"\nRabbitMQ node restarted: {figures}")
    assert figures.resumed, f"broadcasts did not flow again after the node came back: {figures}"
    assert figures.disconnects == 0, figures
    # An emit gives up on a dead broker (the broadcast is lost, logged) instead of hanging
    # the event that made it until the broker is back.
    assert figures.slowest_emit < 5, figures
    assert cluster.worker_pids() == pids_before, "workers crashed or were restarted"
