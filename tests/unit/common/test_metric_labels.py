"""Metric labels from tenant input are bounded."""

from services.common.metrics import OTHER, bounded_label, topic_label
from services.segmenter.domain.rules.templates import builtin_handles, builtin_templates


def test_known_topics_keep_their_label_and_the_rest_read_other() -> None:
    assert topic_label("orders/create") == "orders/create"
    assert topic_label("customers/redact") == "customers/redact"
    assert topic_label("custom/page_viewed") == "custom/page_viewed"
    assert topic_label("custom/anything_else") == OTHER
    assert topic_label("flow/whatever-the-merchant-named") == "flow"
    assert topic_label("Orders/Create ") == OTHER
    assert topic_label("x" * 10_000) == OTHER


def test_segment_labels_are_the_built_in_handles_only() -> None:
    handles = builtin_handles()
    assert "vip" in handles and len(handles) == len(builtin_templates())
    assert bounded_label("vip", handles) == "vip"
    assert bounded_label("my-own-segment-42", handles) == OTHER
