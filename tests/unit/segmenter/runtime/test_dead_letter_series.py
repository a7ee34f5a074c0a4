"""Every dead-letter reason is exported at 0 from the start: a series born at 1 has no earlier
sample, so increase() reads 0 and SegflowDeadLetters would miss a process's first dead letter
of each reason (a single bad event after a restart, never alerted)."""

from services.common.metrics import new_registry
from services.segmenter.domain.event_decoding import DEAD_LETTER_REASONS, decode_event
from services.segmenter.runtime.metrics import SegmenterMetrics


def test_every_reason_starts_at_zero() -> None:
    registry = new_registry()
    SegmenterMetrics.create(registry)
    for reason in DEAD_LETTER_REASONS:
        value = registry.get_sample_value(
            "segflow_segmenter_dead_letters_total", {"reason": reason}
        )
        assert value == 0, reason


def test_the_reasons_include_what_the_decoder_gives() -> None:
    for raw in (None, b"not json", b'{"topic": 1}'):
        result = decode_event(raw)
        assert not isinstance(result, tuple)
        assert result.reason in DEAD_LETTER_REASONS
