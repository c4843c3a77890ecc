"""Remote settings: URL rules, durations, and credentials that never show."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.remote import CredentialsError, RemoteSettings

SECRET = "hunter2-not-in-logs"


def test_defaults_and_durations() -> None:
    s = RemoteSettings.model_validate(
        {"url": "https://registry-1.docker.io/", "timeouts": {"connect": "2s", "idle_read": "1m"}}
    )
    assert s.origin == "https://registry-1.docker.io"
    assert s.host == "registry-1.docker.io"
    assert s.timeouts.connect == 2.0
    assert s.timeouts.idle_read == 60.0
    assert s.timeouts.response_headers == 20.0


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "registry.example",
        "https://user:pw@registry.example",
        "https://registry.example/v2/",
        "https://registry.example?x=1",
        "https://registry.example:99999",
    ],
)
def test_url_must_be_a_root(url: str) -> None:
    with pytest.raises(ValidationError):
        RemoteSettings(url=url)


def test_insecure_and_ca_bundle_exclude_each_other() -> None:
    with pytest.raises(ValidationError):
        RemoteSettings(url="https://r", insecure=True, ca_bundle="/x.pem")


def test_password_never_in_repr_or_str() -> None:
    s = RemoteSettings.model_validate(
        {"url": "https://r", "credentials": {"username": "u", "password": SECRET}}
    )
    assert SECRET not in repr(s)
    assert SECRET not in str(s)
    assert s.credentials is not None
    assert s.credentials.resolve() == ("u", SECRET)


def test_exactly_one_password_source() -> None:
    with pytest.raises(ValidationError):
        RemoteSettings.model_validate({"url": "https://r", "credentials": {"username": "u"}})
    with pytest.raises(ValidationError):
        RemoteSettings.model_validate(
            {
                "url": "https://r",
                "credentials": {"username": "u", "password": "a", "password_env": "B"},
            }
        )


def test_password_from_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text(SECRET + "\n")
    s = RemoteSettings.model_validate(
        {"url": "https://r", "credentials": {"username": "u", "password_file": str(f)}}
    )
    assert s.credentials is not None and s.credentials.resolve() == ("u", SECRET)
    monkeypatch.setenv("REMOTE_PW_TEST", SECRET)
    s = RemoteSettings.model_validate(
        {"url": "https://r", "credentials": {"username": "u", "password_env": "REMOTE_PW_TEST"}}
    )
    assert s.credentials is not None and s.credentials.resolve() == ("u", SECRET)


def test_missing_password_source_says_where_not_what(tmp_path: Path) -> None:
    s = RemoteSettings.model_validate(
        {
            "url": "https://r",
            "credentials": {"username": "u", "password_file": str(tmp_path / "absent")},
        }
    )
    assert s.credentials is not None
    with pytest.raises(CredentialsError, match="absent"):
        s.credentials.resolve()
    s = RemoteSettings.model_validate(
        {"url": "https://r", "credentials": {"username": "u", "password_env": "NO_SUCH_VAR_X"}}
    )
    assert s.credentials is not None
    with pytest.raises(CredentialsError, match="NO_SUCH_VAR_X"):
        s.credentials.resolve()
