import pytest
from pydantic import ValidationError

from services.common.settings import Settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.ingest_port, settings.api_port) == (8000, 8001)
    assert settings.broker_port == 9092
    assert settings.topic_events == "segflow.events"
    assert settings.topic_partitions == 6
    assert settings.max_body_bytes == 5 * 1024 * 1024
    assert settings.database_url is None
    assert (settings.shopify_standin_host, settings.shopify_standin_port) == ("127.0.0.1", 8003)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:9092")
    monkeypatch.setenv("SEGFLOW_INGEST_PORT", "9000")
    monkeypatch.setenv("SEGFLOW_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("SEGFLOW_LOG_LEVEL", "")  # empty means unset
    settings = Settings()
    assert settings.require_database_url() == "postgresql://u@h/db"
    assert settings.require_kafka() == "k:9092"
    assert settings.ingest_port == 9000
    assert settings.topic_partitions == 12
    assert settings.log_level == "INFO"


def test_missing_servers_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        Settings().require_database_url()


def test_production_refuses_demo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("SEGFLOW_DEMO_API_TOKEN", "sfapi_demo")
    with pytest.raises(ValidationError, match="demo secrets"):
        Settings()


def test_email_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGFLOW_MAILBOX_DIR", raising=False)
    settings = Settings()
    assert (settings.smtp_host, settings.smtp_port) == ("127.0.0.1", 1025)
    assert settings.mailbox_directory() == settings.data_dir / "mail"
    assert settings.require_unsubscribe_base_url() == "http://127.0.0.1:8002"
    with pytest.raises(RuntimeError, match="SEGFLOW_UNSUBSCRIBE_KEYS is not set"):
        settings.require_unsubscribe_keys()


def test_email_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="DKIM needs"):
        Settings(dkim_domain="segflow.test")
    with pytest.raises(ValidationError, match="in clear"):
        Settings(smtp_host="smtp.example.com", smtp_username="u")
    assert Settings(smtp_host="127.0.0.1", smtp_username="u").smtp_username == "u"
    with pytest.raises(ValidationError, match="test hook"):
        Settings(environment="production", mailbox_refuse="451:1")
    with pytest.raises(ValidationError, match="https"):
        Settings(environment="production", unsubscribe_base_url="http://shop.example")
    with pytest.raises(RuntimeError, match="SEGFLOW_UNSUBSCRIBE_BASE_URL is not set"):
        Settings(environment="production").require_unsubscribe_base_url()
    monkeypatch.setenv("SEGFLOW_SMTP_PASSWORD", "hunter2-secret")
    assert "hunter2" not in repr(Settings())


def test_journey_settings_default_and_refuse_an_unknown_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    assert (settings.journey_cap_emails, settings.journey_cap_window_hours) == (2, 24.0)
    assert settings.journey_default_timezone == "UTC"
    monkeypatch.setenv("SEGFLOW_JOURNEY_DEFAULT_TIMEZONE", "Europe/Nowhere")
    with pytest.raises(ValidationError, match="unknown IANA time zone 'Europe/Nowhere'"):
        Settings()
    monkeypatch.setenv("SEGFLOW_JOURNEY_DEFAULT_TIMEZONE", "America/Toronto")
    monkeypatch.setenv("SEGFLOW_JOURNEY_CAP_EMAILS", "0")
    with pytest.raises(ValidationError, match="journey_cap_emails"):
        Settings()


def test_the_shutdown_bound_must_run_out_before_segflow_dev_kills_a_role() -> None:
    assert Settings().shutdown_timeout_seconds == 25.0
    with pytest.raises(ValidationError, match="dev_stop_timeout_seconds must exceed"):
        Settings(shutdown_timeout_seconds=30.0, dev_stop_timeout_seconds=30.0)
