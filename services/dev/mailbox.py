"""The local SMTP server of `segflow mailbox`, `segflow dev` and the tests.

Every message it accepts is kept verbatim, as sent after DATA, in a folder of .eml files
(`<UTC time>-<Message-ID>.eml`) that any mail program opens. It runs in the caller's event
loop: `async with LocalMailbox(host, port, directory) as mailbox: ...`.

Test hook: `mailbox.refuse_next(n, code)` (or SEGFLOW_MAILBOX_REFUSE=CODE:N for `segflow
mailbox`) answers the next n messages' data with that 4xx or 5xx reply instead of keeping them,
so a sender's handling of temporary and permanent refusals is tried against a real server.
"""

import asyncio
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

# The SMTP banner's host name; set so the server never waits on a DNS lookup of its own name.
_HOST_NAME = "segflow-mailbox"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
_NAME_LIMIT = 100


@dataclass(frozen=True)
class StoredMessage:
    """One kept message: its file and its bytes exactly as received."""

    path: Path
    raw: bytes

    @property
    def message_id(self) -> str | None:
        """The Message-ID header, angle brackets included, or None."""
        return _message_id(self.raw)

    def parse(self) -> EmailMessage:
        """The message parsed with the modern email policy."""
        return BytesParser(policy=policy.default).parsebytes(self.raw)


def _message_id(raw: bytes) -> str | None:
    headers = BytesHeaderParser(policy=policy.default).parsebytes(raw)
    value = headers.get("Message-ID")
    return str(value).strip() if value is not None else None


def _file_name(received_at: datetime, message_id: str | None) -> str:
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    safe = _UNSAFE.sub("_", (message_id or "").strip("<> ")).strip("._")[:_NAME_LIMIT]
    return f"{stamp}-{safe or 'no-message-id'}.eml"


class MailboxStore:
    """The folder of .eml files: kept atomically, listed in arrival order, found by Message-ID.

    Works on the folder alone, so another process (the tagger resolving a send interrupted by
    a crash) can look a message up while the server runs elsewhere.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, raw: bytes, received_at: datetime) -> Path:
        """Write one message: a temporary file, flushed to disk, then renamed into place."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = _file_name(received_at, _message_id(raw))
        target = self.directory / name
        if target.exists():  # the same message twice within a microsecond
            target = self.directory / f"{name[:-4]}-{uuid.uuid4().hex[:8]}.eml"
        temporary = self.directory / f".{uuid.uuid4().hex}.tmp"
        with open(temporary, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
        return target

    def messages(self) -> list[StoredMessage]:
        """Every kept message, oldest first."""
        if not self.directory.is_dir():
            return []
        return [
            StoredMessage(path, path.read_bytes()) for path in sorted(self.directory.glob("*.eml"))
        ]

    def erase_recipient(self, address: str) -> int:
        """Delete every kept message to this address (customers/redact); return how many."""
        wanted = address.strip().lower()
        erased = 0
        for stored in self.messages():
            headers = BytesHeaderParser(policy=policy.default).parsebytes(stored.raw)
            recipients = [
                a.addr_spec.lower() for h in headers.get_all("To", []) for a in h.addresses
            ]
            if wanted in recipients:
                stored.path.unlink(missing_ok=True)
                erased += 1
        return erased

    def has_message_id(self, message_id: str) -> bool:
        """Whether a message with this Message-ID (with or without <>) was kept."""
        wanted = f"<{message_id.strip().strip('<>')}>"
        return any(stored.message_id == wanted for stored in self.messages())


class _Handler:
    """aiosmtpd's handler: keeps each message, or refuses it while the test hook says so."""

    def __init__(self, mailbox: "LocalMailbox") -> None:
        self._mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._mailbox._take_refusal()
        if refusal is not None:
            return refusal
        raw = envelope.original_content or b""
        path = await asyncio.to_thread(self._mailbox.store.save, raw, datetime.now(UTC))
        self._mailbox._arrived.set()
        return f"250 2.0.0 OK kept as {path.name}"


class _Connection(SMTP):
    """An SMTP session that the mailbox can find again to finish or close it at stop."""

    def __init__(self, handler: _Handler, live: set["_Connection"], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._live.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    def client_task(self) -> "asyncio.Task[None] | None":
        # aiosmtpd runs each session as this task; it ends when the client quits.
        return self._handler_coroutine


class LocalMailbox:
    """A real SMTP server on host:port that keeps every accepted message under `directory`.

    Port 0 picks a free port (see `port` once started). Stopping finishes the sessions in
    progress for up to `stop_grace_seconds`, then closes the rest.
    """

    def __init__(
        self,
        host: str,
        port: int,
        directory: Path,
        *,
        stop_grace_seconds: float = 2.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.store = MailboxStore(directory)
        self._grace = stop_grace_seconds
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._refusal: tuple[int, int] | None = None  # (code, messages left)
        self._arrived = asyncio.Event()

    @property
    def port(self) -> int:
        """The port it listens on."""
        if self._server is None:
            raise RuntimeError("the mailbox is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen; raises OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self.store.directory.mkdir(parents=True, exist_ok=True)

        def connection() -> _Connection:
            return _Connection(
                handler,
                self._connections,
                hostname=_HOST_NAME,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(connection, self.host, self._requested_port)

    async def stop(self) -> None:
        """Stop listening, let sessions in progress finish within the grace, close the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        tasks = self._client_tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=self._grace)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        await asyncio.gather(*self._client_tasks(), *tasks, return_exceptions=True)

    def _client_tasks(self) -> list["asyncio.Task[None]"]:
        return [task for c in self._connections if (task := c.client_task()) is not None]

    async def __aenter__(self) -> "LocalMailbox":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def refuse_next(self, count: int, code: int = 451) -> None:
        """Test hook: answer the next `count` messages with `code` (4xx or 5xx), keeping none."""
        if not 400 <= code <= 599:
            raise ValueError(f"a refusal is a 4xx or 5xx reply, not {code}")
        if count < 0:
            raise ValueError("count must not be negative")
        self._refusal = (code, count) if count else None

    def _take_refusal(self) -> str | None:
        if self._refusal is None:
            return None
        code, left = self._refusal
        self._refusal = (code, left - 1) if left > 1 else None
        kind = "try again later" if code < 500 else "not accepted"
        return f"{code} {code // 100}.0.0 Refused by the mailbox's test hook ({kind})"

    def messages(self) -> list[StoredMessage]:
        """Every kept message, oldest first."""
        return self.store.messages()

    def has_message_id(self, message_id: str) -> bool:
        """Whether a message with this Message-ID was kept."""
        return self.store.has_message_id(message_id)

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[StoredMessage]:
        """The kept messages once there are at least `count`; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self._arrived.clear()
            found = self.messages()
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(found)} of {count} messages arrived within {timeout} s")
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                pass
