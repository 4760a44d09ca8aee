"""Configuration: TOML + GOVMAIL_* overrides -> one frozen settings object; secrets stay hidden."""

from __future__ import annotations

import dataclasses

import pytest

from provisioning.config import Secret, load_settings
from provisioning.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "govmail.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_then_environment_overrides(tmp_path):
    path = write(tmp_path, 'data_dir = "data"\n[database]\nurl = "sqlite:///x.db"\n'
                           '[directory]\nurls = ["ldap://a:389", "ldap://b:389"]\ntimeout = 3\n'
                           '[accounts]\nreserved = ["giamdoc"]\n')
    settings = load_settings(path, env={"GOVMAIL_DIRECTORY_TIMEOUT": "7", "GOVMAIL_ACCOUNTS_RETENTION_DAYS": "30",
                                        "GOVMAIL_DIRECTORY_SYNC_AFTER_CHANGE": "no"})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database.url == f"sqlite:///{tmp_path / 'data' / 'x.db'}"
    assert settings.directory.urls == ("ldap://a:389", "ldap://b:389")
    assert settings.directory.timeout == 7.0 and settings.directory.sync_after_change is False
    assert settings.accounts.retention_days == 30 and settings.accounts.reserved == ("giamdoc",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.data_dir = tmp_path  # type: ignore[misc]


def test_bind_password_from_file_or_environment_never_shown(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "ldap-admin.password").write_text("s3cret-from-file\n")
    settings = load_settings(write(tmp_path, ""), env={})
    assert settings.directory.bind_password.reveal() == "s3cret-from-file"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.directory)
    env = load_settings(write(tmp_path, ""), env={"GOVMAIL_DIRECTORY_BIND_PASSWORD": "from-env"})
    assert env.directory.bind_password == Secret("from-env")


@pytest.mark.parametrize("text, env, message", [
    ("[databse]\nurl = 'x'\n", {}, "unknown section(s) databse"),
    ("[directory]\nurl = 'ldap://x'\n", {}, "unknown key(s) url"),
    ("[directory]\ntimeout = 'soon'\n", {}, "[directory] timeout = 'soon'"),
    ("", {"GOVMAIL_ACCOUNTS_DEFAULT_QUOTA_MB": "lots"}, "default_quota_mb"),
    ("", {"GOVMAIL_DIRECTORY_EMBEDDED": "maybe"}, "expected true or false"),
    ("[accounts]\naddress_style = 'nickname'\n", {}, "address_style"),
    ("[directory]\nurls = ['ldap://h:389/']\n", {}, "ends with '/'"),
    ("not toml [", {}, "not valid TOML"),
])
def test_bad_configuration_names_the_key(tmp_path, text, env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env=env)
    assert message in str(info.value)


def test_secret_value_not_in_conversion_errors(tmp_path):
    path = write(tmp_path, "[directory]\nbind_password = 12345\n")
    assert load_settings(path, env={}).directory.bind_password.reveal() == "12345"


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigError, match="govmail init"):
        load_settings(tmp_path / "none.toml", env={})


def test_certificate_settings_defaults_and_bad_reminder_window(tmp_path):
    settings = load_settings(write(tmp_path, "[certificates]\nreminder_windows = [7, 30]\n"), env={})
    assert settings.certificates.windows == (30, 7) and settings.certificates.fetch_crl is False
    with pytest.raises(ConfigError, match=r"\[certificates\] reminder_windows: 'soon'"):
        load_settings(write(tmp_path, ""), env={"GOVMAIL_CERTIFICATES_REMINDER_WINDOWS": "30,soon"})
