"""Composing journey email: RFC 8058 headers exactly, a stable Message-ID, header injection
refused."""

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from services.tagger.email.compose import (
    HeaderInjectionError,
    compose_email,
    list_unsubscribe,
    message_bytes,
    message_id_for,
)
from services.tagger.email.templates import (
    EmailContext,
    EmailTemplates,
    RenderedEmail,
    TemplateSource,
)
from services.tagger.email.unsubscribe import KeyRing, issue_token, unsubscribe_url

KEYS = KeyRing.parse("k1:" + "s" * 40)
URL = unsubscribe_url("https://tagger.example.com", issue_token(KEYS, 12, 820982911946154508))
AT = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
MESSAGE_ID = message_id_for(12, 345, 2, "mail.example.com")


def _rendered(url: str = URL, first_name: str = "José") -> RenderedEmail:
    context = EmailContext(shop_name="Café Shop", unsubscribe_url=url, first_name=first_name)
    return EmailTemplates().render("welcome/1", context)


def _compose(**changes: object) -> EmailMessage:
    arguments: dict[str, object] = {
        "from_address": "hello@mail.example.com",
        "from_name": "Café Shop",
        "to_address": "jose@example.com",
        "message_id": MESSAGE_ID,
        "unsubscribe_url": URL,
        "date": AT,
    }
    arguments.update(changes)
    rendered = arguments.pop("rendered", None) or _rendered(str(arguments["unsubscribe_url"]))
    return compose_email(rendered, **arguments)  # type: ignore[arg-type]


def _wire(message: EmailMessage) -> EmailMessage:
    return BytesParser(policy=policy.default).parsebytes(message_bytes(message))


def test_the_one_click_headers_are_exactly_rfc_8058s() -> None:
    raw = message_bytes(_compose())
    # One HTTPS URI in angle brackets, on a line of its own, never encoded or folded.
    assert f"\r\nList-Unsubscribe: <{URL}>\r\n".encode() in raw
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in raw
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed.get_all("List-Unsubscribe") == [f"<{URL}>"]
    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


def test_a_mailto_is_added_after_the_https_link() -> None:
    parsed = _wire(_compose(unsubscribe_mailto="unsubscribe@mail.example.com"))
    assert parsed["List-Unsubscribe"] == (
        f"<{URL}>, <mailto:unsubscribe@mail.example.com?subject=unsubscribe>"
    )


def test_the_other_headers_and_both_parts() -> None:
    parsed = _wire(_compose())
    assert parsed["From"] == "Café Shop <hello@mail.example.com>"
    assert parsed["To"] == "jose@example.com"
    assert parsed["Subject"] == "Welcome to Café Shop"
    assert parsed["Date"] == "Wed, 02 Dec 2026 05:00:00 +0000"
    assert parsed["Message-ID"] == MESSAGE_ID
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    page = parsed.get_body(("html",))
    assert text is not None and page is not None
    assert "Hi José," in text.get_content() and URL in text.get_content()
    assert f'href="{URL}"' in page.get_content()


def test_the_wire_form_is_7_bit_with_crlf_line_ends() -> None:
    raw = message_bytes(_compose())
    raw.decode("ascii")
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_the_message_id_is_stable_and_on_the_senders_domain() -> None:
    assert message_id_for(12, 345, 2, "mail.example.com") == MESSAGE_ID
    assert message_id_for(12, 345, 2, "MAIL.example.com") == MESSAGE_ID
    assert MESSAGE_ID.startswith("<segflow-") and MESSAGE_ID.endswith("@mail.example.com>")
    others = {
        message_id_for(13, 345, 2, "mail.example.com"),
        message_id_for(12, 346, 2, "mail.example.com"),
        message_id_for(12, 345, 3, "mail.example.com"),
    }
    assert MESSAGE_ID not in others and len(others) == 3
    # No ids of ours can be read off it.
    assert "345" not in MESSAGE_ID.split("@")[0]
    with pytest.raises(ValueError, match="domain"):
        message_id_for(12, 345, 2, "mail.example.com>\r\nBcc: x@y")


# One test per list rather than one per case: every test item costs the suite a collection.
INJECTIONS: list[dict[str, object]] = [
    {"from_name": "Shop\r\nBcc: victim@example.com"},
    {"from_name": "Shop\nX-Evil: 1"},
    {"to_address": "a@example.com\r\nBcc: victim@example.com"},
    {"to_address": "a@example.com, victim@example.com"},
    {"to_address": "Eve <a@example.com>"},
    {"from_address": "hello@mail.example.com\r\nX: y"},
    {"message_id": "<x@y>\r\nBcc: victim@example.com"},
    {"rendered": RenderedEmail("Hi\r\nBcc: victim@example.com", URL, URL)},
]


def test_line_breaks_and_extra_addresses_in_headers_are_refused() -> None:
    for changes in INJECTIONS:
        with pytest.raises(HeaderInjectionError):
            _compose(**changes)
            raise AssertionError(f"accepted: {changes}")


def test_a_name_with_line_breaks_is_folded_before_it_reaches_the_subject() -> None:
    source = TemplateSource("Hi {{ first_name }}", "{{ first_name }}", "<p>{{ first_name }}</p>")
    context = EmailContext("Shop", URL, first_name="Ann\r\nBcc: victim@example.com")
    rendered = EmailTemplates().render_source(source, context)
    parsed = _wire(_compose(rendered=rendered))
    assert parsed["Subject"] == "Hi Ann Bcc: victim@example.com"
    assert parsed["Bcc"] is None


def test_an_unsafe_unsubscribe_url_is_refused() -> None:
    for url in (
        "https://tagger.example.com/unsubscribe/x>, <https://evil.example/",
        "https://tagger.example.com/unsubscribe/x\r\nBcc: victim@example.com",
        "https://tagger.example.com/unsubscribe/a b",
        "https://tagger.example.com/" + "x" * 1000,
    ):
        with pytest.raises(HeaderInjectionError):
            list_unsubscribe(url)
            raise AssertionError(f"accepted: {url!r}")


def test_the_unsubscribe_url_must_be_https_except_on_this_machine() -> None:
    with pytest.raises(ValueError, match="https"):
        list_unsubscribe("http://tagger.example.com/unsubscribe/x")
    with pytest.raises(ValueError, match="https"):
        list_unsubscribe("mailto:unsubscribe@example.com")
    assert list_unsubscribe("http://127.0.0.1:8002/unsubscribe/x") == (
        "<http://127.0.0.1:8002/unsubscribe/x>"
    )


def test_a_body_without_the_visible_link_is_refused() -> None:
    bare = RenderedEmail("Hi", "no link here", "<p>no link</p>")
    with pytest.raises(ValueError, match="unsubscribe link"):
        _compose(rendered=bare)


def test_a_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _compose(date=datetime(2026, 12, 2, 5, 0))
