"""What the deployment files are checked against: the environment names the Settings class
reads, which of them are secrets, and a role's settings built from a given environment."""

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import AliasChoices, SecretStr

from services.common.sealing import new_key_text, parse_keys
from services.common.settings import Settings
from services.tagger.email.unsubscribe import KeyRing

REPO = Path(__file__).resolve().parents[3]

# The long-running roles, each the `segflow` command of the same name, with the setting that
# holds its HTTP port (health, readiness and metrics are served there).
ROLE_PORTS = {
    "ingest": "ingest_port",
    "segmenter": "segmenter_health_port",
    "api": "api_port",
    "tagger": "tagger_port",
}
ONE_SHOT = {"migrate", "topics"}

# What each command needs to start (services/cli.py: the require_* calls before it serves).
NEEDS_DATABASE = {"ingest", "segmenter", "api", "tagger", "migrate"}
NEEDS_KAFKA = {"ingest", "segmenter", "tagger", "topics"}

# DATABASE_URL is a plain str setting, but its URL carries the database password.
SECRET_URL = "DATABASE_URL"

# Values for secrets the files leave to the operator, shaped as the roles parse them.
SAMPLE_VALUES = {
    "DATABASE_URL": "postgresql://segflow:sample-password@postgres:5432/segflow",
    "SEGFLOW_SEALING_KEYS": new_key_text("k1"),
    "SEGFLOW_UNSUBSCRIBE_KEYS": "u1:" + "s" * 40,
    "SEGFLOW_OPERATOR_TOKEN": "o" * 40,
    "SEGFLOW_UNSUBSCRIBE_BASE_URL": "https://segflow.example.com",
    "SEGFLOW_EMAIL_FROM_ADDRESS": "hello@example.com",
}
SAMPLE_DEFAULT = "sample-value-for-the-deploy-tests-0123456789"


def _names(field_name: str, alias: object) -> set[str]:
    # pydantic-settings reads a field with an alias by its alias only (no prefix).
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    if isinstance(alias, str):
        return {alias}
    return {str(Settings.model_config.get("env_prefix", "")) + field_name}


def _is_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return SecretStr in typing.get_args(annotation)
    return False


def settings_env_names() -> frozenset[str]:
    """Every environment name Settings reads (upper case: it is not case sensitive)."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names |= _names(name, field.validation_alias)
    return frozenset(n.upper() for n in names)


def secret_env_names() -> frozenset[str]:
    """The names of the SecretStr settings, and DATABASE_URL (its password)."""
    names: set[str] = {SECRET_URL}
    for name, field in Settings.model_fields.items():
        if _is_secret(field.annotation):
            names |= _names(name, field.validation_alias)
    return frozenset(n.upper() for n in names)


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings built from exactly `env` (this process's own SEGFLOW_* and the rest unset)."""
    known = settings_env_names()
    for name in list(os.environ):
        if name.upper() in known:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def role_problems(role: str, settings: Settings) -> list[str]:
    """What `segflow ROLE` would refuse at start with these settings."""
    checks: list[tuple[str, typing.Callable[[], object]]] = []
    if role in NEEDS_DATABASE:
        checks.append(("DATABASE_URL", settings.require_database_url))
    if role in NEEDS_KAFKA:
        checks.append(("KAFKA_BOOTSTRAP_SERVERS", settings.require_kafka))
    if role == "tagger":
        # Journey mail needs both (else the scheduler is off); shops' tokens need the keys.
        checks.append(("unsubscribe URL", settings.require_unsubscribe_base_url))
        checks.append(
            ("unsubscribe keys", lambda: KeyRing.parse(settings.require_unsubscribe_keys()))
        )
        sealing = settings.sealing_keys
        keys = sealing.get_secret_value() if sealing is not None else None
        checks.append(("sealing keys", lambda: parse_keys(keys)))
    problems = []
    for what, check in checks:
        try:
            check()
        except Exception as exc:  # any refusal at start is a problem to report
            problems.append(f"{role}: {what}: {exc}")
    if role == "api" and settings.operator_token is None:
        problems.append("api: no SEGFLOW_OPERATOR_TOKEN (the operator's routes stay closed)")
    return problems
