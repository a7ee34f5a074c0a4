"""The API's count of refused segment rules, by reason (a fixed set of labels)."""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

# `invalid_rule` (not a rule of ours) or the limit it exceeds (validate.RuleLimitError.limit,
# or `segments` for the shop's segment count).
REASONS = (
    "invalid_rule",
    "conditions",
    "depth",
    "text",
    "regex_length",
    "regex_program",
    "segments",
)


@dataclass(frozen=True)
class RuleMetrics:
    refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "RuleMetrics":
        """Register the counter in `registry`, every reason at 0."""
        refused = Counter(
            "segflow_api_rules_refused",
            "Segment rules refused with a 422: invalid_rule, or the limit exceeded",
            ["reason"],
            registry=registry,
        )
        for reason in REASONS:
            refused.labels(reason=reason)
        return cls(refused)
