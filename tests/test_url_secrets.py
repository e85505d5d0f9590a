"""No storage URL, however malformed, ever shows its password: not in redact_url(), not in
an error, a repr or a log line of storage_from_url() and the storages' constructors, and
not in the CLI's output. A generated corpus of URLs whose passwords hold the characters
that break URL parsing (``@ # ? / : [ ] % & = ;``), in every shape a user may type."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.test_cli import _in_process
from tgsession import ConfigError, PostgresStorage, RedisStorage
from tgsession.storage.url import redact_url, storage_from_url

# Password pieces: letters that appear nowhere else in a generated URL (one set for the
# user-info's password, another for a password= parameter).
awkward = st.sampled_from([*"@#?/:[]%&=;", "", "%40", "%2", " "])


# In a password= parameter, "&key=value" can only be read as the next parameter: the
# parameter's password holds no & or ; (the user-info's password may).
awkward_in_parameter = st.sampled_from([*"@#?/:[]%=", "", "%40", "%2", " "])


@st.composite
def passwords(draw: st.DrawFn, letters: str = "QXZJ") -> tuple[str, list[str]]:
    pieces = st.text(alphabet=letters, min_size=5, max_size=8)
    parts = draw(st.lists(pieces, min_size=1, max_size=3))
    glue = [draw(awkward if letters == "QXZJ" else awkward_in_parameter) for _ in parts]
    return "".join(g + p for g, p in zip(glue, parts, strict=True)), parts


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, list[str]]:
    password, parts = draw(passwords())
    scheme = draw(st.sampled_from(["redis", "rediss", "postgresql", "postgres", "Redis",
                                   "redis+sentinel", "unix", "memory", "mysql", ""]))
    slashes = draw(st.sampled_from(["//", "/", "", "///"]))
    form = draw(st.sampled_from([":{}", "user:{}", "{}", "u:{}:x"]))
    userinfo = form.format(password)
    written = f"{scheme}:{slashes}{userinfo}"
    if (form == "{}" and scheme.startswith("postgres") and written.startswith(f"{scheme}://")
            and not any(c in written[len(scheme) + 3:] for c in "@/?#[]:")):
        # postgresql://name@host names a user, and no password (also when the "password"
        # began with the second slash: postgresql:/ + /name)
        parts = []
    if form == "{}" and ":" in password:
        # Written without its leading colon, "a:b" reads as user "a", password "b".
        user = password.split(":", 1)[0]
        parts = [part for part in parts if part not in user]

    host = draw(st.sampled_from(["host", "h:6379", "[::1]", "[::1", "::1]", "h:port", "",
                                 "[::1]:80"]))
    tail = draw(st.sampled_from(["", "/0", "/db?name=bot", "?lock_wait=x", "?a=1#b&c=2",
                                 "/0?name=a#frag", "?password={}", "?a=1#x&password={}",
                                 "?PASSWORD={}&name=a", "?pass%77ord={}", ";pwd={}"]))
    query_password, query_parts = draw(passwords("VKWY"))
    if "{}" in tail:
        parts = parts + query_parts
        tail = tail.format(query_password)
    prefix = f"{scheme}:{slashes}" if scheme else ""
    return f"{prefix}{userinfo}@{host}{tail}", parts


def assert_hidden(text: str, parts: list[str]) -> None:
    for part in parts:
        assert part not in text, f"{part!r} shown in {text!r}"


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


CORPUS = settings(max_examples=600, deadline=timedelta(seconds=2),
                  suppress_health_check=[HealthCheck.too_slow])


@CORPUS
@given(urls())
@example(("redis://:pa#QXZJQ@host/0", ["QXZJQ"]))
@example(("redis://:pa?QXZJQ@host/0", ["QXZJQ"]))
@example(("redis://host/0?a=1#b&password=QXZJQ", ["QXZJQ"]))
@example(("redis:/:QXZJQ@host", ["QXZJQ"]))
@example(("redis+sentinel://QXZJQ@host", ["QXZJQ"]))
@example(("redis://:QXZJQ@[::1/0", ["QXZJQ"]))
def test_no_url_shows_its_password(case: tuple[str, list[str]]) -> None:
    url, parts = case
    assert_hidden(redact_url(url), parts)
    with captured_logs() as logs:
        try:
            storage = storage_from_url(url)
        except ConfigError as exc:
            assert_hidden(str(exc), parts)
            assert_hidden(repr(exc), parts)
        else:
            assert_hidden(repr(storage), parts)
            assert_hidden(str(storage), parts)
        for kind in (RedisStorage, PostgresStorage):
            try:
                built = kind(url)
            except ConfigError as exc:
                assert_hidden(str(exc), parts)
            else:
                assert_hidden(repr(built), parts)
    assert_hidden(logs.getvalue(), parts)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(urls())
@example(("redis://:QXZJQ@[::1/0", ["QXZJQ"]))
@example(("redis://:pa#QXZJQ@host/0", ["QXZJQ"]))
def test_the_cli_never_shows_a_url_password(
    tmp_path: Path, case: tuple[str, list[str]]
) -> None:
    url, parts = case
    result = _in_process(["status"], tmp_path, {"SESSION_URL": url}, b"")
    assert "Traceback" not in result.stderr, result.stderr
    assert_hidden(result.stdout + result.stderr, parts)


@pytest.mark.parametrize("url", [
    "redis://:pw@[::1/0", "redis://:pw@::1]/0", "postgresql://u:pw@[::1/db",
    "redis://:p#w@host/0", "redis://:pw@host:port/0",
])
def test_malformed_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        storage_from_url(url)
