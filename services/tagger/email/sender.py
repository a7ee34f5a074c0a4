"""Handing journey email to SMTP (aiosmtplib), each outcome classified for the scheduler.

`SmtpSender.send(message)` returns a `SendResult`: ACCEPTED (the server answered 250 to the
data), TEMPORARY (4xx, connection refused or lost, timeout, TLS or login trouble: retry later)
or PERMANENT (5xx to this message's sender, recipient or data: do not retry). Trouble before
the message is offered (connecting, EHLO, STARTTLS, AUTH) is TEMPORARY whatever its code: it
says nothing about the message, and a mistyped password must defer mail, not fail it for good.
A timeout or lost connection while the data is being sent or answered is TEMPORARY with
`maybe_delivered`: the server may have kept it, so it must not be sent again. Nothing here logs
an address or a body; server replies are logged with addresses blanked.

At most once across crashes: what the journey scheduler (the tagger's worker) does with these
pieces.
1. Before any SMTP, one committed transaction re-checks the customer's marketing consent (the
   customer row locked) and writes the step's send row: state `sending`, its Message-ID from
   `message_id_for(shop, enrolment, step)`. Composing again later gives the same Message-ID.
2. `send()`. ACCEPTED: the row becomes `sent`. TEMPORARY with `should_retry`: back to waiting,
   with a retry time (counted as deferred). PERMANENT: `failed`. TEMPORARY with
   `maybe_delivered`: `unknown`, never re-sent.
3. After a crash, a row still `sending` died between 1 and 2: it is resolved without sending
   (`resolve_interrupted_send`). Where the SMTP side can be searched by Message-ID it is `sent`
   when found there; else `unknown` and not re-sent. The local mailbox can be searched
   (`MailboxStore.has_message_id`); an email provider's API usually searches sent messages by
   Message-ID or by a custom header; a plain relay (Postfix) logs `message-id=<...>` for each
   message it accepted, which an operator can grep. Receivers deduplicate nothing.
At most once beats at least once for marketing mail: a duplicate offer annoys, can double a
coupon and draws spam complaints (Gmail's bar is 0.1%), while a lost one costs one email.
"""

import logging
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from enum import StrEnum
from typing import Literal, Protocol

import aiosmtplib

from services.common.settings import Settings
from services.tagger.email.compose import address_domain, message_bytes
from services.tagger.email.dkim import DkimSigner

logger = logging.getLogger(__name__)

_ADDRESS_LIKE = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")
_DETAIL_LIMIT = 200


class SendOutcome(StrEnum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    """What became of one message: outcome, the server's code if it gave one, and a detail
    (the server's words, addresses blanked)."""

    outcome: SendOutcome
    message_id: str
    code: int | None = None
    detail: str = ""
    # The message data was on its way or sent when the connection failed: it may have arrived.
    maybe_delivered: bool = False

    @property
    def should_retry(self) -> bool:
        """Whether sending it again later is right (temporary, and surely not delivered)."""
        return self.outcome is SendOutcome.TEMPORARY and not self.maybe_delivered


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to hand mail over."""

    host: str
    port: int
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    # The envelope sender (bounces go there); None: the From address.
    return_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "SmtpConfig":
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=password,
            timeout_seconds=settings.smtp_timeout_seconds,
            return_path=settings.email_return_path,
        )


class MessageLookup(Protocol):
    def has_message_id(self, message_id: str) -> bool:
        """Whether the SMTP side holds a message with this Message-ID."""
        ...


def resolve_interrupted_send(
    message_id: str, lookup: MessageLookup | None
) -> Literal["sent", "unknown"]:
    """The state of a send found `sending` after a crash, decided without sending again."""
    if lookup is not None and lookup.has_message_id(message_id):
        return "sent"
    return "unknown"


def _blank_addresses(text: str) -> str:
    return _ADDRESS_LIKE.sub("<address>", text)[:_DETAIL_LIMIT]


def _one_address(message: EmailMessage, header: str) -> str:
    found = getaddresses([str(value) for value in message.get_all(header, [])])
    if len(found) != 1 or not found[0][1]:
        raise ValueError(f"a journey email has exactly one {header} address")
    return found[0][1]


SmtpPhase = Literal["connect", "mail", "rcpt", "data"]


class SmtpSender:
    """Sends one message per connection and classifies what happened; signs when given a
    DKIM signer."""

    def __init__(self, config: SmtpConfig, signer: DkimSigner | None = None) -> None:
        self._config = config
        self._signer = signer

    async def send(self, message: EmailMessage) -> SendResult:
        """Hand `message` (composed, with its Message-ID) to the SMTP server."""
        message_id = str(message.get("Message-ID", "")).strip()
        if not message_id:
            raise ValueError("a journey email needs its Message-ID before it is sent")
        sender = _one_address(message, "From")
        recipient = _one_address(message, "To")
        raw = message_bytes(message)
        if self._signer is not None:
            raw = self._signer.sign(raw)
        config = self._config
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout_seconds,
            use_tls=config.tls == "tls",
            start_tls=config.tls == "starttls",
            username=config.username,
            password=config.password,
            # Our own name in EHLO, so no DNS lookup of this machine's name is waited on.
            local_hostname=address_domain(sender),
        )
        phase: SmtpPhase = "connect"
        try:
            await client.connect()
            phase = "mail"
            await client.mail(config.return_path or sender)
            phase = "rcpt"
            await client.rcpt(recipient)
            phase = "data"
            response = await client.data(raw)
        except (aiosmtplib.SMTPException, OSError) as exc:
            result = classify_failure(message_id, phase, exc)
        else:
            result = SendResult(
                SendOutcome.ACCEPTED, message_id, response.code, _blank_addresses(response.message)
            )
            await _quit(client)
        finally:
            client.close()
        _log(result)
        return result


async def _quit(client: aiosmtplib.SMTP) -> None:
    # The message is accepted already; a failing goodbye changes nothing.
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass


# Refusals of the session rather than of the message, whenever they come (aiosmtplib sends
# EHLO lazily, with the first command that needs it).
_SESSION_ERRORS = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPNotSupported,
)


def classify_failure(message_id: str, phase: SmtpPhase, exc: Exception) -> SendResult:
    """The result of a send that raised `exc` at `phase` (connect, mail, rcpt or data)."""
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    text = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
    detail = _blank_addresses(f"{phase}: {type(exc).__name__}: {text}")
    if isinstance(exc, _SESSION_ERRORS):
        phase = "connect"
    if code is not None and phase != "connect":
        outcome = SendOutcome.PERMANENT if 500 <= code <= 599 else SendOutcome.TEMPORARY
        return SendResult(outcome, message_id, code, detail)
    # No reply to judge: refused, timed out or cut off. During the data, the server may have it.
    return SendResult(
        SendOutcome.TEMPORARY, message_id, code, detail, maybe_delivered=phase == "data"
    )


def _log(result: SendResult) -> None:
    level = logging.DEBUG if result.outcome is SendOutcome.ACCEPTED else logging.WARNING
    logger.log(
        level,
        "email %s",
        result.outcome.value,
        extra={
            "message_id": result.message_id,
            "smtp_code": result.code,
            "detail": result.detail,
            "maybe_delivered": result.maybe_delivered,
        },
    )
