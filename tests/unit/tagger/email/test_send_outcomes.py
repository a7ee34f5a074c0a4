"""How each SMTP failure is classified: what the journey scheduler retries, fails or leaves
alone."""

import aiosmtplib

from services.tagger.email.sender import SendOutcome, SmtpPhase, classify_failure

ID = "<segflow-1@mail.example.com>"


REFUSALS: list[tuple[SmtpPhase, Exception, str, int | None]] = [
    ("mail", aiosmtplib.SMTPSenderRefused(451, "4.3.2 try later", "x@y.z"), "temporary", 451),
    ("mail", aiosmtplib.SMTPSenderRefused(553, "5.7.1 not ours", "x@y.z"), "permanent", 553),
    ("rcpt", aiosmtplib.SMTPRecipientRefused(452, "4.2.2 full", "a@b.c"), "temporary", 452),
    ("rcpt", aiosmtplib.SMTPRecipientRefused(550, "5.1.1 no such", "a@b.c"), "permanent", 550),
    ("data", aiosmtplib.SMTPDataError(421, "4.7.0 slow down"), "temporary", 421),
    ("data", aiosmtplib.SMTPDataError(552, "5.3.4 too big"), "permanent", 552),
    # Refusals of the session, not of the message: defer, whatever the code.
    ("connect", aiosmtplib.SMTPConnectResponseError(554, "no service"), "temporary", 554),
    ("mail", aiosmtplib.SMTPHeloError(550, "go away"), "temporary", 550),
    ("connect", aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad"), "temporary", 535),
    ("connect", aiosmtplib.SMTPNotSupported("STARTTLS not offered"), "temporary", None),
    ("connect", ConnectionRefusedError(111, "refused"), "temporary", None),
    ("connect", aiosmtplib.SMTPConnectTimeoutError("timed out"), "temporary", None),
]


def test_refusals_are_classified_by_their_code_and_phase() -> None:
    for phase, error, outcome, code in REFUSALS:
        result = classify_failure(ID, phase, error)
        case = f"{phase} {error!r}"
        assert (result.outcome, result.code) == (SendOutcome(outcome), code), case
        assert not result.maybe_delivered, case
        assert result.should_retry is (outcome == "temporary"), case


def test_losing_the_server_during_the_data_may_have_delivered() -> None:
    for error in (
        aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
        aiosmtplib.SMTPServerDisconnected("Connection lost"),
        ConnectionResetError(104, "reset"),
    ):
        result = classify_failure(ID, "data", error)
        assert result.outcome is SendOutcome.TEMPORARY, repr(error)
        assert result.maybe_delivered and not result.should_retry, repr(error)


def test_the_same_loss_before_the_data_is_safe_to_retry() -> None:
    result = classify_failure(ID, "rcpt", aiosmtplib.SMTPServerDisconnected("Connection lost"))
    assert result.should_retry


def test_addresses_in_server_replies_are_blanked() -> None:
    error = aiosmtplib.SMTPRecipientRefused(
        550, "5.1.1 <ada.lovelace@example.org>: Recipient address rejected", "ada@example.org"
    )
    result = classify_failure(ID, "rcpt", error)
    assert "example.org" not in result.detail
    assert "<<address>>: Recipient address rejected" in result.detail
