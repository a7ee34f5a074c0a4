"""The mailbox's folder of .eml files, without a server."""

from datetime import UTC, datetime
from pathlib import Path

from services.dev.mailbox import MailboxStore

AT = datetime(2026, 12, 2, 5, 0, 0, 123456, tzinfo=UTC)


def test_a_hostile_message_id_cannot_leave_the_folder(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path / "mail")
    raw = b"Message-ID: <../../etc/passwd\\x@evil>\r\nSubject: x\r\n\r\nbody\r\n"
    path = store.save(raw, AT)
    assert path.parent == tmp_path / "mail"
    assert path.name == "20261202T050000.123456Z-etc_passwd_x@evil.eml"
    assert path.read_bytes() == raw


def test_a_message_without_message_id_is_kept_too(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path)
    path = store.save(b"Subject: x\r\n\r\nbody\r\n", AT)
    assert path.name == "20261202T050000.123456Z-no-message-id.eml"
    [stored] = store.messages()
    assert stored.message_id is None


def test_the_same_message_at_the_same_moment_is_kept_twice(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path)
    raw = b"Message-ID: <same@segflow.test>\r\n\r\nbody\r\n"
    first, second = store.save(raw, AT), store.save(raw, AT)
    assert first != second
    assert [m.raw for m in store.messages()] == [raw, raw]
    assert store.has_message_id("<same@segflow.test>")


def test_an_empty_or_missing_folder_has_no_messages(tmp_path: Path) -> None:
    store = MailboxStore(tmp_path / "never-created")
    assert store.messages() == []
    assert not store.has_message_id("<x@y>")
