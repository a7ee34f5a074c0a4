"""Load clients: wrk replaying pre-built signed webhooks, wrk on the segments lookup, a paced
webhook client, and a reader of segflow.segment-changes.

The clients send pre-built bytes, so their own cost is small; wrk's CPU time is measured
(resource usage of the child) and reported with each figure.
"""

import asyncio
import json
import resource
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.store import Delivery
from services.common.signing import sign_webhook

WEBHOOK_PATH = "/webhooks/shopify"

# One wrk thread replays the file once: each request once, in order, over many connections.
# Past the end it asks for a path that does not exist (404), which does not count; it prints
# ALLDONE when every webhook has been answered, and the harness then stops it.
REPLAY_LUA = r"""
local requests = {}
local idx, limit, accepted, failed = 0, 0, 0, 0
local filler = nil
local verified, announced = false, false
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = string.find(data, "\n", pos, true)
    local len = tonumber(string.sub(data, pos, nl - 1))
    requests[#requests + 1] = string.sub(data, nl + 1, nl + len)
    pos = nl + len + 1
  end
  limit = #requests
  -- Here wrk.headers holds the Host header, which HTTP/1.1 requires.
  filler = wrk.format("GET", "/bench-filler")
end
function request()
  -- wrk calls request() once after init only to check the request's shape: that call
  -- must not use up a webhook.
  if not verified then
    verified = true
    return filler
  end
  idx = idx + 1
  if idx > limit then return filler end
  return requests[idx]
end
function response(status, headers, body)
  if status == 200 then
    accepted = accepted + 1
  elseif status ~= 404 then
    failed = failed + 1
  end
  if not announced and accepted + failed >= limit then
    announced = true
    io.write(string.format('ALLDONE {"accepted":%d,"failed":%d}\n', accepted, failed))
    io.flush()
  end
end
"""

LOOKUP_LUA = r"""
local ids = {}
local idx = 0
local token = nil
function init(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  token = args[2]
end
function request()
  idx = idx % #ids + 1
  return wrk.format("GET", "/v1/customers/" .. ids[idx] .. "/segments",
    {["Authorization"] = "Bearer " .. token})
end
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"non2xx":%d,"errors":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def signed_request(delivery: Delivery, host: str, shop: str, secret: str) -> bytes:
    """The raw HTTP/1.1 request Shopify would send for this delivery, keep-alive."""
    body = delivery.body
    triggered = delivery.triggered_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    headers = [
        f"POST {WEBHOOK_PATH} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        "User-Agent: Shopify-Captain-Hook",
        f"X-Shopify-Topic: {delivery.topic}",
        f"X-Shopify-Shop-Domain: {shop}",
        f"X-Shopify-Hmac-Sha256: {sign_webhook(body, secret)}",
        f"X-Shopify-Webhook-Id: {delivery.webhook_id}",
        f"X-Shopify-Event-Id: {delivery.event_id}",
        f"X-Shopify-Triggered-At: {triggered}",
        "X-Shopify-API-Version: 2025-07",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def write_requests(path: Path, requests: Sequence[bytes]) -> None:
    """The replay file: each request as `<length>\\n<bytes>`."""
    with path.open("wb") as out:
        for raw in requests:
            out.write(f"{len(raw)}\n".encode())
            out.write(raw)


@dataclass
class WrkRun:
    seconds: float
    output: dict[str, Any]
    client_cpu_seconds: float

    @property
    def client_cpu_percent(self) -> float:
        return round(100 * self.client_cpu_seconds / self.seconds, 1) if self.seconds else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    raise RuntimeError(f"wrk printed no summary:\n{text[-2000:]}")


def _wrk() -> str:
    """wrk's path; a clear error naming the install command where it is missing."""
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: `make tools` (or apt-get install wrk)")
    return path


async def replay(
    url: str, request_file: Path, script_dir: Path, connections: int, timeout: float
) -> WrkRun:
    """Send every request of the file once with wrk; the time until the last answer."""
    script = script_dir / "replay.lua"
    script.write_text(REPLAY_LUA)
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        _wrk(), "-t1", f"-c{connections}", f"-d{int(timeout)}s", "-s", str(script),
        url + WEBHOOK_PATH, "--", str(request_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    finished = None
    try:
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                break
            lines.append(line)
            if line.startswith("ALLDONE ") and finished is None:
                finished = time.perf_counter()
                process.send_signal(signal.SIGINT)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    ended = finished or time.perf_counter()
    text = "".join(lines)
    if finished is None:
        raise RuntimeError(f"wrk did not get every webhook answered in {timeout} s:\n{text}")
    done_line = next(line for line in lines if line.startswith("ALLDONE "))
    output = json.loads(done_line.removeprefix("ALLDONE "))
    return WrkRun(ended - started, output, _children_cpu() - cpu_before)


async def lookups(
    url: str, ids: Sequence[int], token: str, script_dir: Path, seconds: int, connections: int
) -> WrkRun:
    """GET /v1/customers/{id}/segments from `connections` keep-alive clients for `seconds`."""
    script = script_dir / "lookup.lua"
    script.write_text(LOOKUP_LUA)
    id_file = script_dir / "lookup-ids.txt"
    id_file.write_text("".join(f"{i}\n" for i in ids))
    cpu_before = _children_cpu()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        _wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url, "--",
        str(id_file), token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.decode()[-2000:]}")
    return WrkRun(
        time.perf_counter() - started, _last_json(out.decode()), _children_cpu() - cpu_before
    )


@dataclass
class Seen:
    """The first change seen for one cause event."""

    received_at: datetime | None
    published_ms: int
    seen_at: float


@dataclass
class ChangeReader:
    """Reads segflow.segment-changes from its end at start; counts and times what arrives."""

    bootstrap: str
    topic: str
    shop: str
    count: int = 0
    last_seen: float = 0.0
    first: dict[str, Seen] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()  # loads the metadata partitions_for_topic reads
            partitions = consumer.partitions_for_topic(self.topic) or set()
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_end(*assigned)
            for tp in assigned:
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    change = json.loads(record.value)
                    if change.get("shop") != self.shop:
                        continue
                    self.count += 1
                    self.last_seen = now
                    cause = change.get("cause_event_id")
                    if cause and cause not in self.first:
                        received = change.get("received_at")
                        self.first[cause] = Seen(
                            datetime.fromisoformat(received) if received else None,
                            record.timestamp,
                            now,
                        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


@dataclass
class Paced:
    sent: int
    ok: int
    late_ms_max: float
    send_times: dict[str, float]
    seconds: float
    # Set when the server could not keep up: sending stopped once this far behind.
    gave_up_late_s: float | None = None


async def paced(
    host: str,
    port: int,
    requests: Sequence[tuple[str, bytes]],
    rate: float,
    connections: int,
    max_late_s: float = 3.0,
) -> Paced:
    """Send (event id, raw request) pairs at a fixed rate over keep-alive connections; stop
    early when the server falls `max_late_s` behind the schedule (it cannot take the rate)."""
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = []
    for _ in range(connections):
        pair = await asyncio.open_connection(host, port)
        opened.append(pair)
        idle.put_nowait(pair)
    ok = 0
    late_max = 0.0
    send_times: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()

    async def exchange(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes) -> None:
        nonlocal ok
        reader, writer = pair
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        if head.startswith(b"HTTP/1.1 200"):
            ok += 1
        idle.put_nowait(pair)

    gave_up = None
    started = time.perf_counter()
    try:
        for i, (event_id, raw) in enumerate(requests):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pair = await idle.get()
            now = time.perf_counter()
            late_max = max(late_max, now - due)
            if now - due > max_late_s:
                idle.put_nowait(pair)
                gave_up = now - due
                break
            send_times[event_id] = now
            task = asyncio.create_task(exchange(pair, raw))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
    finally:
        for _, writer in opened:
            writer.close()
    seconds = time.perf_counter() - started
    return Paced(len(send_times), ok, late_max * 1000, send_times, seconds, gave_up)
