"""The local SMTP server over real SMTP: messages kept verbatim, the refusal hook, stopping,
and `segflow mailbox` as a process of its own."""

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from services.dev.mailbox import LocalMailbox
from tests.helpers import free_port


def _raw_message(message_id: str, subject: str = "Hello") -> bytes:
    message = EmailMessage()
    message["From"] = "Shop <hello@segflow.test>"
    message["To"] = "customer@example.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Hi there.\n.a line starting with a dot\n", cte="quoted-printable")
    return message.as_bytes(policy=policy.SMTP)


async def _send(port: int, raw: bytes) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5) as client:
        await client.sendmail("hello@segflow.test", ["customer@example.com"], raw)


async def test_a_message_is_kept_verbatim_as_an_eml_file(mailbox: LocalMailbox) -> None:
    raw = _raw_message("<m1.abc@segflow.test>")
    await _send(mailbox.port, raw)
    [stored] = await mailbox.wait_for_messages(1)
    assert stored.raw == raw
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-m1\.abc@segflow\.test\.eml", stored.path.name)
    assert stored.path.parent == mailbox.store.directory
    assert stored.parse()["Subject"] == "Hello"
    assert mailbox.has_message_id("<m1.abc@segflow.test>")
    assert mailbox.has_message_id("m1.abc@segflow.test")
    assert not mailbox.has_message_id("<m2.abc@segflow.test>")
    # Nothing half-written is left beside it.
    assert sorted(p.name for p in mailbox.store.directory.iterdir()) == [stored.path.name]


async def test_messages_are_listed_in_arrival_order(mailbox: LocalMailbox) -> None:
    for n in range(3):
        await _send(mailbox.port, _raw_message(f"<order-{n}@segflow.test>"))
    stored = await mailbox.wait_for_messages(3)
    assert [m.message_id for m in stored] == [f"<order-{n}@segflow.test>" for n in range(3)]


async def test_the_hook_refuses_the_next_messages_with_the_code_given(
    mailbox: LocalMailbox,
) -> None:
    mailbox.refuse_next(2, 451)
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await _send(mailbox.port, _raw_message("<refused-4xx@segflow.test>"))
        assert refused.value.code == 451
    mailbox.refuse_next(1, 550)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await _send(mailbox.port, _raw_message("<refused-5xx@segflow.test>"))
    assert refused.value.code == 550
    await _send(mailbox.port, _raw_message("<kept@segflow.test>"))
    assert [m.message_id for m in await mailbox.wait_for_messages(1)] == ["<kept@segflow.test>"]


def test_the_hook_takes_only_4xx_and_5xx(tmp_path: Path) -> None:
    box = LocalMailbox("127.0.0.1", 0, tmp_path)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        box.refuse_next(1, 250)


async def test_stop_closes_a_session_left_open_and_stops_listening(tmp_path: Path) -> None:
    box = LocalMailbox("127.0.0.1", 0, tmp_path / "mail", stop_grace_seconds=0.2)
    await box.start()
    port = box.port
    idle = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
    await idle.connect()
    async with asyncio.timeout(5):
        await box.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await idle.noop()
    idle.close()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await _send(port, _raw_message("<late@segflow.test>"))


def _mailbox_process(port: int, directory: Path, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "SEGFLOW_SMTP_PORT": str(port),
        "SEGFLOW_MAILBOX_DIR": str(directory),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from services.cli import main; sys.exit(main())"]
        + ["mailbox"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _wait_until_listening(process: subprocess.Popen[str], port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            if process.poll() is not None:
                raise AssertionError(f"segflow mailbox exited: {process.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                await asyncio.sleep(0.05)


async def test_segflow_mailbox_runs_until_sigterm_with_its_refusal_hook(tmp_path: Path) -> None:
    port = free_port()
    process = _mailbox_process(port, tmp_path / "mail", SEGFLOW_MAILBOX_REFUSE="451:1")
    try:
        await _wait_until_listening(process, port)
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await _send(port, _raw_message("<first@segflow.test>"))
        assert refused.value.code == 451
        raw = _raw_message("<second@segflow.test>")
        await _send(port, raw)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert f"mailbox on 127.0.0.1:{port}" in stdout
    [kept] = list((tmp_path / "mail").glob("*.eml"))
    assert kept.read_bytes() == raw


async def test_segflow_mailbox_exits_1_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = _mailbox_process(port, tmp_path / "mail")
        try:
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in stdout
