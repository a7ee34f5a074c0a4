"""The journey email counters: outcomes, bounded labels, a registry of their own."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from services.common.metrics import new_registry
from services.tagger.email.metrics import EmailMetrics
from services.tagger.email.sender import SendOutcome, SendResult

ID = "<segflow-1@mail.example.com>"


def _value(registry: CollectorRegistry, journey: str, step: str, outcome: str) -> float:
    labels = {"journey": journey, "step": step, "outcome": outcome}
    value = registry.get_sample_value("segflow_tagger_emails_total", labels)
    return value or 0.0


def test_send_results_are_counted_by_journey_step_and_outcome() -> None:
    registry = new_registry()
    metrics = EmailMetrics.create(registry)
    metrics.count_result("welcome", 1, SendResult(SendOutcome.ACCEPTED, ID, 250))
    metrics.count_result("welcome", 1, SendResult(SendOutcome.ACCEPTED, ID, 250))
    metrics.count_result("welcome", 3, SendResult(SendOutcome.TEMPORARY, ID, 451))
    metrics.count_result("win-back", 2, SendResult(SendOutcome.PERMANENT, ID, 550))
    lost = SendResult(SendOutcome.TEMPORARY, ID, None, maybe_delivered=True)
    metrics.count_result("vip-care", 1, lost)
    metrics.count("vip-care", 2, "deferred")  # a quiet hour, say
    assert _value(registry, "welcome", "1", "sent") == 2
    assert _value(registry, "welcome", "3", "deferred") == 1
    assert _value(registry, "win-back", "2", "failed") == 1
    assert _value(registry, "vip-care", "1", "unknown") == 1
    assert _value(registry, "vip-care", "2", "deferred") == 1
    assert _value(registry, "welcome", "1", "failed") == 0


def test_labels_stay_bounded() -> None:
    registry = new_registry()
    metrics = EmailMetrics.create(registry)
    for n in range(50):
        metrics.count(f"merchant-journey-{n}", n + 1, "sent")
    text = generate_latest(registry).decode()
    assert "merchant-journey" not in text
    assert _value(registry, "other", "other", "sent") == 30
    assert _value(registry, "other", "20", "sent") == 1
    with pytest.raises(ValueError, match="unknown email outcome"):
        metrics.count("welcome", 1, "bounced")  # type: ignore[arg-type]


def test_two_instances_do_not_collide() -> None:
    first, second = new_registry(), new_registry()
    EmailMetrics.create(first).count("welcome", 1, "sent")
    EmailMetrics.create(second)
    assert _value(first, "welcome", "1", "sent") == 1
    assert _value(second, "welcome", "1", "sent") == 0
