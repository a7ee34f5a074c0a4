"""Prometheus counters of journey email: sent, deferred, failed (and unknown) by journey and step.

Labels stay bounded: journeys are data merchants edit, so a journey outside the known handles
is counted as `other`, and so is a step past MAX_STEP.
"""

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from services.tagger.email.sender import SendOutcome, SendResult

Outcome = Literal["sent", "deferred", "failed", "unknown"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "deferred", "failed", "unknown")
SHIPPED_JOURNEYS = ("welcome", "vip-care", "win-back")
MAX_STEP = 20
OTHER = "other"


def outcome_of(result: SendResult) -> Outcome:
    """The counted outcome of a send: deferred when it will be retried, unknown when it may
    have arrived (and is therefore not retried)."""
    if result.outcome is SendOutcome.ACCEPTED:
        return "sent"
    if result.outcome is SendOutcome.PERMANENT:
        return "failed"
    return "deferred" if result.should_retry else "unknown"


@dataclass(frozen=True)
class EmailMetrics:
    emails: Counter
    journeys: frozenset[str]

    @classmethod
    def create(
        cls, registry: CollectorRegistry, journeys: tuple[str, ...] = SHIPPED_JOURNEYS
    ) -> "EmailMetrics":
        """Register the email counter in `registry`; `journeys` are the handles labelled as such."""
        emails = Counter(
            "segflow_tagger_emails",
            "Journey emails by journey, step (1-based) and outcome: sent, deferred (retried "
            "later: a 4xx, no server, a quiet hour or cap), failed (5xx, not retried), unknown "
            "(the connection failed during the data: maybe delivered, not retried)",
            ["journey", "step", "outcome"],
            registry=registry,
        )
        return cls(emails, frozenset(journeys))

    def count(self, journey: str, step: int, outcome: Outcome) -> None:
        """Count one email of `journey`'s step `step` (1-based) with this outcome."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown email outcome {outcome!r}")
        journey_label = journey if journey in self.journeys else OTHER
        step_label = str(step) if 1 <= step <= MAX_STEP else OTHER
        self.emails.labels(journey_label, step_label, outcome).inc()

    def count_result(self, journey: str, step: int, result: SendResult) -> None:
        """Count what became of one send."""
        self.count(journey, step, outcome_of(result))
