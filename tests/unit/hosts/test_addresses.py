"""The host addresses an operator writes (``--advertise``, ``--peers``) and the directory's
keys as Redis holds them (cluster.hosts.addresses): a value, or one line saying what is wrong."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cluster.hosts.addresses import (entries, format_address, key_of, key_pattern,
                                     parse_address, parse_advertise, parse_peers)


@pytest.mark.parametrize("text, address", [
    ("10.0.0.2:8000", ("10.0.0.2", 8000)), (" host-a.local:1 ", ("host-a.local", 1)),
    ("[::1]:8000", ("::1", 8000)), ("[fe80::1%eth0]:65535", ("fe80::1%eth0", 65535))])
def test_an_address_reads_as_host_and_port(text, address):
    assert parse_advertise(text) == address
    assert parse_address(format_address(address)) == address


@pytest.mark.parametrize("text, reason", [
    ("10.0.0.2", "expected HOST:PORT"), (":8000", "expected HOST:PORT"),
    ("::1:8000", "expected HOST:PORT"), ("[::1]8000", "expected HOST:PORT"),
    ("[]:80", "expected HOST:PORT"), ("a:0", "port must be 1..65535"),
    ("a:65536", "port must be 1..65535"), ("a:http", "port must be 1..65535"),
    ("a b:80", "no spaces")])
def test_a_bad_advertise_address_is_one_line_naming_the_option(text, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        parse_advertise(text)
    text = str(caught.value)
    assert text.startswith("--advertise: bad address") and "\n" not in text


def test_peers_read_as_ids_and_addresses():
    assert parse_peers("") == {}
    assert parse_peers("1=10.0.0.1:8000, 2=[::2]:8000,4095=b:1,") == {
        1: ("10.0.0.1", 8000), 2: ("::2", 8000), 4095: ("b", 1)}


@pytest.mark.parametrize("text, reason", [
    ("10.0.0.1:8000", "bad entry '10.0.0.1:8000': expected ID=HOST:PORT"),
    ("0=a:1", "bad host id '0': a number from 1 to 4095"),
    ("4096=a:1", "bad host id '4096'"), ("x=a:1", "bad host id 'x'"),
    ("1=a", "bad address 'a'"), ("1=a:1,1=b:1", "host id 1 is given twice"),
    ("1=a:1,2=a:1", "a:1 is given to two host ids")])
def test_bad_peers_are_one_line_naming_the_option(text, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        parse_peers(text)
    assert str(caught.value).startswith("--peers: ")


@given(st.text(max_size=40))
def test_any_peers_text_gives_peers_or_a_value_error(text):
    try:
        peers = parse_peers(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(1 <= host_id <= 4095 and 0 < port < 65536
                   for host_id, (_host, port) in peers.items())


def test_the_directory_reads_back_from_its_keys_and_skips_what_is_not_an_entry():
    found = {key_of("chat", 2): "10.0.0.2:8000", key_of("chat", 3): "[::3]:80",
             key_of("chat", 4): None, key_of("chat", 5): "garbage", "chat:hosts:0": "a:1",
             "chat:hosts:x": "a:1", key_of("other", 6): "a:1"}
    assert entries("chat", found) == {2: ("10.0.0.2", 8000), 3: ("::3", 80)}


def test_the_scan_pattern_escapes_the_channel_names_glob_characters():
    assert key_pattern("socketio") == "socketio:hosts:*"
    assert key_pattern("a*b[1]?") == "a\\*b\\[1\\]\\?:hosts:*"
