"""Building a journey email: RFC 8058 one-click headers, a fixed Message-ID, no header injection.

Every message carries `List-Unsubscribe: <https://...>` (plus `<mailto:...>` when configured,
RFC 2369's comma-separated list) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and
its text and HTML parts show the same link. The Message-ID depends only on (shop, enrolment,
step), so a step composed twice, before and after a crash, is the same message.
"""

import hashlib
import html
import ipaddress
import re
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import urlsplit

from services.tagger.email.templates import RenderedEmail

ONE_CLICK = "List-Unsubscribe=One-Click"
# The bytes that go on the wire: CRLF, every part 7-bit, headers folded only where RFC 5322
# must (998). The default of 78 would turn a long unsubscribe URL into encoded words that no
# mail client reads as a URL.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)
_MAX_URL = 900
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
)
# ASCII addresses only: journey mail is sent without SMTPUTF8.
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}$")
_MESSAGE_ID = re.compile(r"^<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+>$")
_URL_FORBIDDEN = re.compile(r"[\s<>,\"'\\\x00-\x1f\x7f]")


class HeaderInjectionError(ValueError):
    """A header value that carries a line break or control character, or an unsafe address."""


def message_id_for(shop_id: int, enrolment_id: int, step_index: int, domain: str) -> str:
    """The Message-ID of one journey step's email: the same inputs always give the same one."""
    domain = domain.lower()
    if not _DOMAIN.match(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    seed = f"segflow-message\x00{shop_id}\x00{enrolment_id}\x00{step_index}".encode()
    return f"<segflow-{hashlib.sha256(seed).hexdigest()[:32]}@{domain}>"


def address_domain(address: str) -> str:
    """The domain of an email address, lower-cased."""
    return address.rpartition("@")[2].lower()


def _check_text(header: str, value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise HeaderInjectionError(f"{header} contains a line break or control character")
    return value


def _check_address(header: str, value: str) -> str:
    _check_text(header, value)
    if not _ADDRESS.match(value) or ".." in value:
        raise HeaderInjectionError(f"{header} is not a plain ASCII email address")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_unsubscribe_url(url: str) -> str:
    if len(url) > _MAX_URL or _URL_FORBIDDEN.search(url):
        raise HeaderInjectionError("the unsubscribe URL is too long or has characters not allowed")
    parts = urlsplit(url)
    secure = parts.scheme == "https" and bool(parts.hostname)
    # RFC 8058 wants HTTPS; plain HTTP is let through only to this machine, for development.
    local = parts.scheme == "http" and _is_loopback(parts.hostname or "")
    if not (secure or local):
        raise ValueError(f"the unsubscribe URL must be https:// (RFC 8058), not {url!r}")
    return url


def list_unsubscribe(url: str, mailto: str | None = None) -> str:
    """The List-Unsubscribe value: the HTTPS link, then the optional mailto (RFC 2369)."""
    value = f"<{_check_unsubscribe_url(url)}>"
    if mailto:
        value += (
            f", <mailto:{_check_address('the unsubscribe mailto', mailto)}?subject=unsubscribe>"
        )
    return value


def compose_email(
    rendered: RenderedEmail,
    *,
    from_address: str,
    from_name: str | None,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    date: datetime,
    unsubscribe_mailto: str | None = None,
) -> EmailMessage:
    """One journey email, text and HTML alternatives; ValueError (HeaderInjectionError for
    line breaks in headers) rather than a message that would be unsafe or non-compliant."""
    if date.tzinfo is None:
        raise ValueError("the Date must be timezone-aware")
    if not _MESSAGE_ID.match(message_id):
        raise HeaderInjectionError(f"not a Message-ID: {message_id!r}")
    if unsubscribe_url not in rendered.text or html.escape(unsubscribe_url) not in rendered.html:
        raise ValueError("both parts must show the unsubscribe link (Gmail and Yahoo require it)")
    message = EmailMessage()
    message["From"] = Address(
        display_name=_check_text("From name", from_name or ""),
        addr_spec=_check_address("From", from_address),
    )
    message["To"] = Address(addr_spec=_check_address("To", to_address))
    message["Subject"] = _check_text("Subject", rendered.subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = list_unsubscribe(unsubscribe_url, unsubscribe_mailto)
    message["List-Unsubscribe-Post"] = ONE_CLICK
    # Quoted-printable keeps every part 7-bit: no relay re-encodes it, which would break DKIM.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire (and as DKIM signs it)."""
    return message.as_bytes(policy=WIRE_POLICY)
