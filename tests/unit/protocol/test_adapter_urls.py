"""Adapter URLs: which schemes are accepted, and a password never printed."""
from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.protocol import adapters
from cluster.setup.config import ConfigError, make_settings


@pytest.mark.parametrize("url, family", [
    ("redis://127.0.0.1:6379/0", "redis"),
    ("rediss://user:pw@cache.example:6380/1", "redis"),
    ("unix:///run/redis.sock", "redis"),
    ("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/0/mymaster", "redis"),
    ("valkey://127.0.0.1:6379/0", "redis"),
    ("valkeys://127.0.0.1:6380/0", "redis"),
    ("valkey+sentinel://10.0.0.1:26379/0/mymaster", "redis"),
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp"),
    ("amqps://user:pw@broker.example:5671/vhost", "amqp"),
])
def test_every_socketio_scheme_is_accepted(url, family):
    assert make_settings("app:sio", adapter=url).adapter == url
    assert adapters.scheme_of(url).family == family


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:6379", "the scheme must be one of"),
    ("kafka://127.0.0.1:9092", "the scheme must be one of"),
    ("redis://127.0.0.1:99999/0", "bad port"),
    ("unix://", "unix:// needs a socket path"),
    ("redis+sentinel://10.0.0.1,10.0.0.2/0/mymaster", "HOST:PORT,HOST:PORT"),
    ("redis+sentinel://10.0.0.1:26379/zero/mymaster", "the database must be a number"),
])
def test_a_bad_url_is_one_line(url, why):
    with pytest.raises(ConfigError, match=why) as error:
        make_settings("app:sio", adapter=url)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("url, shown", [
    ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://app:s3cret@h:6379/0", "redis://app:***@h:6379/0"),
    ("redis://app:p@ss@h:6379/0", "redis://app:***@h:6379/0"),
    ("amqp://guest:guest@127.0.0.1:5672//", "amqp://guest:***@127.0.0.1:5672//"),
    ("redis+sentinel://:pw@a:1,b:2/0/m", "redis+sentinel://:***@a:1,b:2/0/m"),
    ("redis://app@h:6379/0", "redis://app@h:6379/0"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
])
def test_redact_masks_the_password_only(url, shown):
    assert adapters.redact(url) == shown


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="@/"),
               min_size=4, max_size=30))
def test_no_password_survives_redact_or_scrub(password):
    url = f"redis://app:{password}@cache.example:6379/0"
    assert password not in adapters.redact(url).partition("@")[0].partition(":***")[2]
    assert password in adapters.secrets_of(url)
    message = f"cannot reach {url}: AUTH {password} refused"
    assert password not in adapters.scrub(message, url)


@pytest.mark.parametrize("url, shown", [
    ("redis://127.0.0.1:6379/0?password=s3cret", "redis://127.0.0.1:6379/0?password=***"),
    ("rediss://app@h:6380/1?ssl_cert_reqs=none&password=s3cret",
     "rediss://app@h:6380/1?ssl_cert_reqs=none&password=***"),
    ("unix:///run/redis.sock?db=1&password=s3cret", "unix:///run/redis.sock?db=1&password=***"),
    ("unix://:s3cret@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ("redis+sentinel://a:1,b:2/0/m?sentinel_password=s3cret",
     "redis+sentinel://a:1,b:2/0/m?sentinel_password=***"),
    ("valkey://h/0?Password=s3cret", "valkey://h/0?Password=***"),
    ("amqp://u:s3cret@h1;amqp://u:s3cret2@h2//", "amqp://u:***@h1;amqp://u:***@h2//"),
])
def test_redact_masks_a_password_in_every_form_the_adapters_take(url, shown):
    assert adapters.redact(url) == shown
    assert adapters.redact_text(f"cannot reach {url} (refused)") == f"cannot reach {shown} (refused)"


_PASSWORD = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
                    min_size=4, max_size=30).map(lambda text: "Pw" + text)
"""A password (its ``Pw`` start keeps it out of the rest of the URL)."""
_PLAIN = st.text(alphabet="abcdefghijklmnoqrstuvxyz0123456789_-", min_size=1, max_size=8)


@st.composite
def _credentialed_urls(draw) -> tuple[str, str]:
    """(URL, raw password): every scheme, the password in the user info or in the query
    (quoted as a URL wants it, or raw), with or without a user, hosts, path and query."""
    password = draw(_PASSWORD)
    written = draw(st.sampled_from([urllib.parse.quote(password, safe=""), password]))
    scheme = draw(st.sampled_from(sorted(adapters.SCHEMES)))
    user = draw(st.sampled_from(["", "app"]))
    hosts = (",".join(f"{draw(_PLAIN)}:{port}" for port in (26379, 26380))
             if adapters.SCHEMES[scheme].sentinel else f"{draw(_PLAIN)}.example:6379")
    if scheme == "unix":
        hosts = ""
    path = draw(st.sampled_from(["", "/0", "/0/mymaster", "/run/redis.sock", "//"]))
    others = draw(st.lists(st.tuples(_PLAIN, _PLAIN), max_size=2))
    in_query = draw(st.booleans())
    if in_query:
        name = draw(st.sampled_from(["password", "sentinel_password", "ssl_password", "PASSWORD"]))
        query = [*others, (name, urllib.parse.quote(password, safe=""))]
        userinfo = f"{user}@" if user else ""
    else:
        if set(written) & set("/@?#"):  # a URL must quote these
            written = urllib.parse.quote(password, safe="")
        query = others
        userinfo = f"{user}:{written}@"
    random_order = draw(st.permutations(query))
    query_text = "&".join(f"{key}={value}" for key, value in random_order)
    return f"{scheme}://{userinfo}{hosts}{path}{'?' + query_text if query_text else ''}", password


@given(_credentialed_urls(), st.sampled_from(["", "(", '"', "boot failed: "]))
def test_no_password_survives_in_any_url_shape(url_and_password, around):
    url, password = url_and_password
    quoted = urllib.parse.quote(password, safe="")
    shown = adapters.redact(url)
    assert password not in shown and quoted not in shown
    assert "***" in shown
    message = f"{around}cannot reach {url}: AUTH {password} ({quoted}) refused {around}"
    for masked in (adapters.scrub(message, url), adapters.redact_text(message, url)):
        assert password not in masked and quoted not in masked
    if not set(url) & set("'\"<>"):  # in free text, a quote or a bracket ends a URL
        text = adapters.redact_text(f"{around}{url} {around}")
        assert password not in text and quoted not in text


@pytest.mark.parametrize("text, shown", [
    ("cannot connect to postgresql://app:pg-pw@db.internal/app: refused",
     "cannot connect to postgresql://app:***@db.internal/app: refused"),
    ('two: "redis://:a1@h:1/0" and amqp://g:b2@r//, then ?next=redis://u:c3@x',
     'two: "redis://:***@h:1/0" and amqp://g:***@r//, then ?next=redis://u:***@x'),
    ("redis://h:6379/0 has no password, nor has this line", None),
])
def test_redact_text_masks_every_url_password(text, shown):
    assert adapters.redact_text(text) == (shown or text)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"),
                                      blacklist_characters="@/?#'\"<>*"),
               min_size=4, max_size=30),
       st.text(max_size=30))
def test_no_password_survives_redact_text(password, around):
    url = f"redis://app:{password}@cache.example:6379/0"
    text = f"{around} worker said {url} and then {password}{around}"
    assert password not in adapters.redact_text(text, url)


def test_a_bad_scheme_error_does_not_show_the_password():
    with pytest.raises(ConfigError) as error:
        make_settings("app:sio", adapter="http://app:s3cret@h:6379/0")
    assert "s3cret" not in str(error.value)
