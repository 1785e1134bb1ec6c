"""Settings as a user writes them: what is refused, what is understood, what is never shown."""

from __future__ import annotations

import pytest

from labelsync.delivery import DEFAULT_MAX_REQUEST_BYTES
from labelsync.settings import DEFAULT_MAX_REQUEST_BYTES as SETTINGS_DEFAULT
from labelsync.settings import ConfigError, load


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("LABEL_STUDIO_", "LABELSYNC_")) or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file from the checkout


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:hunter2secret@127.0.0.1:8080",
        "https://hunter2secret@labelstudio.example.com/",
        "http://admin:hunter2secret@[::1]:8080/ls",
    ],
)
def test_a_url_with_userinfo_is_refused_and_never_shown(url: str, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert "LABEL_STUDIO_URL" in message and "user name or password" in message
    assert "hunter2secret" not in message and "admin" not in message
    assert "***@" in message  # the rest of the URL is shown, to find the setting
    assert "\n" not in message


def test_urls_without_userinfo_are_kept(monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "https://ls.example.com/label-studio/")
    assert load().label_studio_url == "https://ls.example.com/label-studio"


@pytest.mark.parametrize("url", ["http://", "http://host:port", "ftp://x"])
def test_a_broken_url_is_one_line(url, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL"):
        load()


@pytest.mark.parametrize(
    ("addr", "bound"),
    [
        ("9464", "127.0.0.1:9464"),  # port only: loopback, as documented
        (":9464", "127.0.0.1:9464"),
        ("0.0.0.0:9464", "0.0.0.0:9464"),  # every interface only when asked for
        ("[::1]:9464", "[::1]:9464"),
    ],
)
def test_metrics_addresses(addr: str, bound: str, monkeypatch):
    monkeypatch.setenv("LABELSYNC_METRICS_ADDR", addr)
    assert load().metrics_addr == bound


@pytest.mark.parametrize("addr", ["127.0.0.1:http", "127.0.0.1:70000", "[x]:1", "::1:9464"])
def test_a_bad_metrics_address_is_one_line_naming_the_setting(addr: str, monkeypatch):
    monkeypatch.setenv("LABELSYNC_METRICS_ADDR", addr)
    with pytest.raises(ConfigError) as caught:
        load()
    assert str(caught.value).startswith("configuration: LABELSYNC_METRICS_ADDR")
    assert "\n" not in str(caught.value)


def test_request_size_and_import_deadline_defaults_and_overrides(monkeypatch):
    settings = load()
    assert settings.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES == SETTINGS_DEFAULT
    assert settings.import_timeout_seconds == 120 and settings.timeout_seconds == 30
    monkeypatch.setenv("LABELSYNC_MAX_REQUEST_BYTES", "1048576")
    monkeypatch.setenv("LABELSYNC_IMPORT_TIMEOUT_SECONDS", "300")
    settings = load()
    assert settings.max_request_bytes == 1048576 and settings.import_timeout_seconds == 300
    monkeypatch.setenv("LABELSYNC_MAX_REQUEST_BYTES", "10")
    with pytest.raises(ConfigError, match="LABELSYNC_MAX_REQUEST_BYTES"):
        load()
