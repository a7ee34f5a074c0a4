"""The SMTP sender against real SMTP servers: the local mailbox (kept, refused 4xx and 5xx),
no server at all, and servers that stall before the greeting or after the data."""

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import dkim as dkimpy
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from services.dev.mailbox import LocalMailbox, MailboxStore
from services.tagger.email.compose import compose_email, message_bytes, message_id_for
from services.tagger.email.dkim import DkimSigner
from services.tagger.email.sender import (
    SendOutcome,
    SmtpConfig,
    SmtpSender,
    resolve_interrupted_send,
)
from services.tagger.email.templates import EmailContext, EmailTemplates
from services.tagger.email.unsubscribe import KeyRing, issue_token, unsubscribe_url
from tests.helpers import free_port
from tests.unit.tagger.email.dkim_keys import generate_key

RECIPIENT = "ada.lovelace@example.org"
KEYS = KeyRing.parse("k1:" + "k" * 40)


def _message(step: int = 0) -> EmailMessage:
    url = unsubscribe_url("https://tagger.example.com", issue_token(KEYS, 12, 820982911946154508))
    context = EmailContext(
        shop_name="Acme", unsubscribe_url=url, first_name="Ada", coupon_code="WELCOME10"
    )
    return compose_email(
        EmailTemplates().render("welcome/3", context),
        from_address="hello@mail.example.com",
        from_name="Acme",
        to_address=RECIPIENT,
        message_id=message_id_for(12, 77, step, "mail.example.com"),
        unsubscribe_url=url,
        date=datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
    )


def _sender(port: int, timeout: float = 5.0, signer: DkimSigner | None = None) -> SmtpSender:
    return SmtpSender(SmtpConfig("127.0.0.1", port, timeout_seconds=timeout), signer)


async def test_an_accepted_message_is_kept_exactly_as_sent(mailbox: LocalMailbox) -> None:
    message = _message()
    result = await _sender(mailbox.port).send(message)
    assert result.outcome is SendOutcome.ACCEPTED and result.code == 250
    assert result.message_id == message["Message-ID"]
    assert not result.should_retry
    [stored] = await mailbox.wait_for_messages(1)
    # The boundary was fixed when the sender flattened it, so these are the bytes sent.
    assert stored.raw == message_bytes(message)
    parsed = stored.parse()
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe"):
        assert parsed[header] == message[header]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = parsed.get_body(("plain",))
    assert text is not None and "WELCOME10" in text.get_content()
    assert resolve_interrupted_send(result.message_id, mailbox.store) == "sent"
    other = message_id_for(12, 77, 1, "mail.example.com")
    assert resolve_interrupted_send(other, mailbox.store) == "unknown"
    assert resolve_interrupted_send(result.message_id, None) == "unknown"


async def test_a_signed_message_arrives_with_a_signature_that_verifies(
    mailbox: LocalMailbox,
) -> None:
    key = generate_key(seed=2369)
    signer = DkimSigner("example.com", "segflow", key.private_pem)
    result = await _sender(mailbox.port, signer=signer).send(_message())
    assert result.outcome is SendOutcome.ACCEPTED
    [stored] = await mailbox.wait_for_messages(1)
    assert stored.raw.startswith(b"DKIM-Signature: ")

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return key.dns_record if name == b"segflow._domainkey.example.com." else None

    assert dkimpy.verify(stored.raw, dnsfunc=dns)


async def test_a_4xx_is_temporary_and_a_5xx_permanent(mailbox: LocalMailbox) -> None:
    sender = _sender(mailbox.port)
    mailbox.refuse_next(1, 451)
    deferred = await sender.send(_message(0))
    assert (deferred.outcome, deferred.code) == (SendOutcome.TEMPORARY, 451)
    assert deferred.should_retry and not deferred.maybe_delivered
    assert "test hook" in deferred.detail
    mailbox.refuse_next(1, 554)
    failed = await sender.send(_message(1))
    assert (failed.outcome, failed.code) == (SendOutcome.PERMANENT, 554)
    assert not failed.should_retry
    assert mailbox.messages() == []
    # The retry of the deferred one goes through.
    assert (await sender.send(_message(0))).outcome is SendOutcome.ACCEPTED
    assert [m.message_id for m in await mailbox.wait_for_messages(1)] == [_message(0)["Message-ID"]]


async def test_no_server_is_temporary() -> None:
    result = await _sender(free_port()).send(_message())
    assert result.outcome is SendOutcome.TEMPORARY and result.code is None
    assert result.should_retry
    assert "connect" in result.detail


@dataclass
class _Stall:
    port: int
    release: asyncio.Event


@pytest.fixture
async def silent_server() -> AsyncIterator[_Stall]:
    """A TCP server that accepts connections and never says a word (no SMTP greeting)."""
    release = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield _Stall(server.sockets[0].getsockname()[1], release)
    release.set()
    server.close()
    await server.wait_closed()
    for writer in writers:
        writer.close()
        await writer.wait_closed()


async def test_a_server_that_never_greets_is_temporary_after_the_timeout(
    silent_server: _Stall,
) -> None:
    async with asyncio.timeout(5):
        result = await _sender(silent_server.port, timeout=0.3).send(_message())
    assert result.outcome is SendOutcome.TEMPORARY and result.should_retry


class _StallAfterData:
    """aiosmtpd handler that takes the message and never answers it."""

    def __init__(self) -> None:
        self.received = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.set()
        await self.release.wait()
        return "250 OK"


async def test_a_timeout_after_the_data_may_have_delivered_and_is_not_retried() -> None:
    loop = asyncio.get_running_loop()
    handler = _StallAfterData()
    sessions: list[SMTP] = []

    def session() -> SMTP:
        smtp = SMTP(handler, hostname="stall", loop=loop)
        sessions.append(smtp)
        return smtp

    server = await loop.create_server(session, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        async with asyncio.timeout(5):
            result = await _sender(port, timeout=0.5).send(_message())
        assert handler.received.is_set()
        assert result.outcome is SendOutcome.TEMPORARY
        assert result.maybe_delivered and not result.should_retry
    finally:
        handler.release.set()
        server.close()
        await server.wait_closed()
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        tasks = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


class _KeepAuthenticated:
    """aiosmtpd handler of a server that wants a login (over plain TCP: loopback only)."""

    def __init__(self) -> None:
        self.logins: list[bytes] = []
        self.kept = 0

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (b"segflow", b"right-password")
        if isinstance(data, LoginPassword):
            self.logins.append(data.login)
        # handled=False: aiosmtpd itself answers 235 or 535.
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        self.kept += 1
        return "250 OK"


async def test_a_login_is_made_and_a_refused_one_defers_rather_than_fails() -> None:
    loop = asyncio.get_running_loop()
    handler = _KeepAuthenticated()
    sessions: list[SMTP] = []

    def session() -> SMTP:
        smtp = SMTP(
            handler,
            hostname="auth",
            authenticator=handler.authenticate,
            auth_require_tls=False,
            loop=loop,
        )
        sessions.append(smtp)
        return smtp

    server = await loop.create_server(session, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        right = SmtpConfig(
            "127.0.0.1", port, username="segflow", password="right-password", timeout_seconds=5
        )
        wrong = SmtpConfig(
            "127.0.0.1", port, username="segflow", password="wrong", timeout_seconds=5
        )
        accepted = await SmtpSender(right).send(_message(0))
        refused = await SmtpSender(wrong).send(_message(1))
    finally:
        server.close()
        await server.wait_closed()
        tasks = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
    assert accepted.outcome is SendOutcome.ACCEPTED and handler.kept == 1
    # The right login once; the wrong one with each mechanism aiosmtplib tries.
    assert len(handler.logins) >= 2 and set(handler.logins) == {b"segflow"}
    # A wrong password says nothing about the message: it waits for the fix, it is not lost.
    assert refused.outcome is SendOutcome.TEMPORARY and refused.code == 535
    assert refused.should_retry
    assert "wrong" not in refused.detail


async def test_nothing_personal_is_logged(
    mailbox: LocalMailbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services")
    sender = _sender(mailbox.port)
    await sender.send(_message(0))
    mailbox.refuse_next(1, 550)
    await sender.send(_message(1))
    await _sender(free_port()).send(_message(2))
    # The server's own log (aiosmtpd's mail.log) is the mailbox's, quietened by
    # configure_logging; what matters here is what segflow's sender writes.
    ours = [record for record in caplog.records if record.name.startswith("services")]
    assert len(ours) == 3, "the sender logs each outcome"
    for record in ours:
        everything = record.getMessage() + repr(vars(record))
        assert RECIPIENT not in everything
        assert "WELCOME10" not in everything and "Ada" not in everything


async def test_the_mailbox_store_answers_from_another_process_view(
    mailbox: LocalMailbox,
) -> None:
    result = await _sender(mailbox.port).send(_message())
    await mailbox.wait_for_messages(1)
    # What a tagger resolving a crash would use: the folder alone, no server object.
    assert MailboxStore(mailbox.store.directory).has_message_id(result.message_id)
