"""storage_from_url() and redact_url(): every scheme, every bad URL, no password shown.

Building a storage connects nothing, so none of these tests needs a server.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from tgsession import ConfigError, MemoryStorage, PostgresStorage, RedisStorage
from tgsession.environment import read_settings, storage_from_environment
from tgsession.storage.url import redact_url, storage_from_url

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:hunter2@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:hunter2@host/0", "redis://user:***@host/0"),
        ("redis://hunter2@host/0", "redis://***@host/0"),  # a password without its colon
        ("rediss://:hunter2@host", "rediss://:***@host"),
        ("postgresql://bot:hunter2@db:5432/bots", "postgresql://bot:***@db:5432/bots"),
        ("postgresql://bot@db/bots", "postgresql://bot@db/bots"),
        ("postgresql://bot@db/bots?password=hunter2", "postgresql://bot@db/bots?password=***"),
        ("postgres://bot:hunt/er2@db/bots", "postgres://bot:***@db/bots"),  # unescaped "/"
        ("redis://:hun@ter2@host/0", "redis://:***@host/0"),  # unescaped "@"
        ("redis://:h%40nter2@host/0?name=x", "redis://:***@host/0?name=x"),
        ("redis://host:6379/0?name=bot", "redis://host:6379/0?name=bot"),
        ("file:///var/lib/a@b/session.json", "file:///var/lib/a@b/session.json"),
        ("memory://", "memory://"),
        ("hunter2@host", "***@host"),  # not a URL: mask what looks like credentials
    ],
)
def test_redact_url_masks_every_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("url", "kind", "attributes"),
    [
        ("redis://127.0.0.1:6379/0", RedisStorage, {"name": "default", "lease_ttl": 15.0}),
        (
            "redis://:hunter2@host:6380/2?name=bot&lease_ttl=5&lock_wait=30",
            RedisStorage,
            {"name": "bot", "lease_ttl": 5.0, "lock_wait": 30.0},
        ),
        ("rediss://user:hunter2@host/0?ssl_cert_reqs=none", RedisStorage, {}),
        ("redis://host/0?key_prefix=myapp&socket_timeout=2", RedisStorage, {}),
        ("postgresql://bot:hunter2@db:5432/bots?name=b1", PostgresStorage, {"name": "b1"}),
        ("postgres://bot@db/bots?sslmode=require&lock_wait=10", PostgresStorage, {}),
        ("postgresql://bot@db/bots?table_prefix=app.tgs", PostgresStorage, {}),
        ("memory://", MemoryStorage, {}),
    ],
)
def test_good_urls_build_their_storage(url: str, kind: type, attributes: dict[str, object]) -> None:
    storage = storage_from_url(url)
    assert isinstance(storage, kind)
    for attribute, value in attributes.items():
        assert getattr(storage, attribute) == value
    assert SECRET not in repr(storage)
    assert SECRET not in str(storage)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///var/lib/bot/session.json", "/var/lib/bot/session.json"),
        ("file://localhost/var/lib/bot/session.json", "/var/lib/bot/session.json"),
        ("file:///var/lib/my%20bot/session.json", "/var/lib/my bot/session.json"),
        ("file:relative/session.json", str(Path.cwd() / "relative/session.json")),
    ],
)
def test_file_urls_build_a_file_storage(url: str, path: str) -> None:
    file_module = pytest.importorskip("tgsession.storage.file")
    storage = storage_from_url(url)
    assert isinstance(storage, file_module.FileStorage)
    assert str(storage.path) == path


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("hunter2@host", "no scheme"),
        ("ftp://user:hunter2@host/", "unsupported scheme 'ftp://'"),
        ("mysql://user:hunter2@host/db", "unsupported scheme"),
        ("redis://:hunter2@host:port/0", "invalid"),
        ("redis://:xx/hunter2@host:6379/0", "invalid port"),  # a "/" in the password
        ("redis://:hunter2@host/0?lease_ttl=abc", "lease_ttl='abc'"),
        ("redis://:hunter2@host/0?lease_ttl=0", "lease_ttl"),
        ("redis://:hunter2@host/0?lock_wait=-1", "lock_wait"),
        ("redis://:hunter2@host/0?bogus=1", "unknown option 'bogus'"),
        ("redis://:hunter2@host/0?name=a&name=b", "sets 'name' twice"),
        ("redis://:hunter2@host/0?name=", "name= must not be empty"),
        ("postgresql://u:hunter2@host:99999/db", "invalid port"),
        ("postgresql://u:hunter2@host/db?lock_wait=soon", "lock_wait"),
        ("postgresql://u:hunter2@host/db?table_prefix=a-b", "table_prefix"),
        ("postgresql://u@host/db?password=hunter2&lease_ttl=-5", "lease_ttl"),
        ("file://relative/session.json", "names a host"),
        ("file:///", "needs a file path"),
        ("file:///x/session.json?mode=600", "take no options"),
        ("memory://somewhere", "takes no host"),
    ],
)
def test_bad_urls_give_one_config_error_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        storage_from_url(url)
    message = str(caught.value)
    assert SECRET not in message
    if SECRET in url and url.strip():
        assert "***" in message


def test_storage_constructors_refuse_tgsession_options_in_the_driver_url() -> None:
    with pytest.raises(ConfigError, match="from_url"):
        RedisStorage("redis://:hunter2@host/0?name=bot")
    with pytest.raises(ConfigError, match="from_url") as caught:
        PostgresStorage("postgresql://u:hunter2@host/db?lease_ttl=5")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("module", "url", "extra"),
    [
        ("redis", "redis://host/0", "telethon-tgsession[redis]"),
        ("asyncpg", "postgresql://u@host/db", "telethon-tgsession[postgres]"),
    ],
)
def test_missing_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, url: str, extra: str
) -> None:
    backend = "tgsession.storage.redis" if module == "redis" else "tgsession.storage.postgres"
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)  # None: "import fails"
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, backend, raising=False)
    with pytest.raises(ImportError) as caught:
        importlib.import_module(backend)
    assert f"pip install '{extra}'" in str(caught.value)
    with pytest.raises(ImportError, match="pip install"):
        storage_from_url(url)
    # Through the environment: one ConfigError naming the variable and the extra.
    with pytest.raises(ConfigError, match=r"SESSION_URL is set, but .*pip install") as caught:
        storage_from_environment(read_settings(env={"SESSION_URL": url}, dotenv=False))
    assert f"pip install '{extra}'" in str(caught.value)
