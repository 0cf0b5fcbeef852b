"""A host's id in the directory (cluster.hosts.lease, cluster.hosts.directory), against a
real private redis-server: claimed at start in a short child process, refused when another
master holds it, gone a lease after its holder dies, released only by its holder."""
from __future__ import annotations

import uuid

import pytest

from cluster.hosts import directory, lease
from cluster.hosts.addresses import LEASE_MS, key_of
from cluster.hosts.lease import LeaseError
from tests.support.waiting import wait_for

ME = ("127.0.0.11", 8000)
OTHER = ("127.0.0.12", 8000)


@pytest.fixture
def channel() -> str:
    """A channel of this test's own on the session's redis-server."""
    return f"lease-{uuid.uuid4().hex[:8]}"


def test_a_free_id_asked_for_is_claimed_with_a_lease(redis_server, channel):
    assert lease.claim(redis_server.url, channel, ME, 7) == 7
    client = redis_server.client()
    assert client.get(key_of(channel, 7)) == b"127.0.0.11:8000"
    assert 0 < client.pttl(key_of(channel, 7)) <= LEASE_MS
    assert directory.read(redis_server.url, channel) == {7: ME}


def test_an_id_held_by_another_master_is_refused_in_one_line(redis_server, channel):
    redis_server.client().set(key_of(channel, 3), "10.0.0.2:8000", px=LEASE_MS)
    with pytest.raises(LeaseError) as caught:
        lease.claim(redis_server.url, channel, ME, 3)
    assert str(caught.value) == ("host id 3 is held by 10.0.0.2:8000 (another master): give "
                                 "another --host-id, or none to be given a free one")
    assert redis_server.client().get(key_of(channel, 3)) == b"10.0.0.2:8000"


def test_an_id_held_with_our_own_address_is_taken_over(redis_server, channel):
    """This host restarted before its lease ran out: its id is its own again."""
    redis_server.client().set(key_of(channel, 3), "127.0.0.11:8000", px=1000)
    assert lease.claim(redis_server.url, channel, ME, 3) == 3
    assert redis_server.client().pttl(key_of(channel, 3)) > 1000


HELD_MS = 120_000
"""The lease of the entries a test plants: other masters that stay (a claim takes a child
process, seconds on a loaded machine: longer than one 6 s lease)."""


def test_no_id_asked_for_gives_the_first_free_one(redis_server, channel):
    client = redis_server.client()
    for host_id in (1, 2, 4):
        client.set(key_of(channel, host_id), f"10.0.0.{host_id}:8000", px=HELD_MS)
    assert lease.claim(redis_server.url, channel, ME, None) == 3
    assert client.get(key_of(channel, 3)) == b"127.0.0.11:8000"
    assert lease.claim(redis_server.url, channel, OTHER, None) == 5
    assert client.get(key_of(channel, 5)) == b"127.0.0.12:8000"
    assert directory.read(redis_server.url, channel).items() >= {
        1: ("10.0.0.1", 8000), 2: ("10.0.0.2", 8000), 4: ("10.0.0.4", 8000), 5: OTHER}.items()


def test_when_every_id_is_held_the_claim_says_so(redis_server, channel):
    client = redis_server.client()
    for host_id in (1, 2, 3):
        client.set(key_of(channel, host_id), f"127.0.0.1:{9000 + host_id}", px=HELD_MS)
    with pytest.raises(LeaseError, match=rf"every host id \(1 to 3\) is held on channel "
                                         rf"'{channel}': no free one"):
        lease.claim(redis_server.url, channel, ME, None, limit=4)


def test_an_entry_nobody_renews_is_gone_after_the_lease(redis_server, channel):
    """The claiming child is gone at once; a master killed -9 renews no more: its entry
    leaves the directory a lease later."""
    assert lease.claim(redis_server.url, channel, ME, None) == 1
    assert directory.read(redis_server.url, channel) == {1: ME}
    wait_for(lambda: directory.read(redis_server.url, channel) == {}, LEASE_MS / 1000 + 5,
             what="the entry to lapse")


def test_release_deletes_only_our_own_entry(redis_server, channel):
    lease.claim(redis_server.url, channel, ME, 5)
    lease.release(redis_server.url, channel, 5, OTHER)
    assert directory.read(redis_server.url, channel) == {5: ME}
    lease.release(redis_server.url, channel, 5, ME)
    assert directory.read(redis_server.url, channel) == {}


def test_an_unreachable_broker_is_one_line_without_the_password(channel):
    url = "redis://:s3cret@127.0.0.1:1/0"
    with pytest.raises(LeaseError) as caught:
        lease.claim(url, channel, ME, None)
    text = str(caught.value)
    assert text.startswith("cannot reach the broker at redis://:***@127.0.0.1:1/0: ")
    assert "s3cret" not in text and "\n" not in text and "Traceback" not in text


def test_the_forwarders_upkeep_renews_ours_follows_the_others_and_gives_ours_up(
        redis_server, channel):
    import asyncio

    client = redis_server.client()
    assert lease.claim(redis_server.url, channel, ME, 2) == 2

    async def scenario() -> None:
        kept = directory.RedisDirectory(redis_server.url, channel, 2, ME)
        changes: list[dict] = []
        upkeep = asyncio.create_task(kept.run(lambda: changes.append(dict(kept.hosts))))

        async def until(predicate, what: str) -> None:
            for _ in range(200):
                if predicate():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        await until(lambda: changes == [{2: ME}], "our own entry to be read")
        client.pexpire(key_of(channel, 2), 1500)  # nearly lapsed: the next renewal restores it
        await until(lambda: client.pttl(key_of(channel, 2)) > 3000, "the renewal")
        client.set(key_of(channel, 9), "127.0.0.19:8000", px=LEASE_MS)
        await until(lambda: kept.hosts == {2: ME, 9: ("127.0.0.19", 8000)}, "a new host")
        client.delete(key_of(channel, 9))
        await until(lambda: kept.hosts == {2: ME}, "a host gone")
        upkeep.cancel()
        await kept.give_up()
        await kept.close()

    asyncio.run(scenario())
    assert client.get(key_of(channel, 2)) is None
