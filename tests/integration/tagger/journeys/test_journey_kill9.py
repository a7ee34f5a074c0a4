"""kill -9 a real `segflow tagger` after SMTP accepted a journey email and before it recorded
that; the restarted process settles the `sending` record from the mailbox's store and never
sends the step again."""

import os
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common.settings import Settings
from services.tagger.journeys.holdout import Group
from tests.helpers import free_port
from tests.integration.segmenter.processes import SEGFLOW, SegmenterProcess, poll
from tests.integration.tagger.journeys.support import KEYS, Journeys, midday_zone


class TaggerProcess(SegmenterProcess):
    """One `segflow tagger` process (the segmenter's helper, another command and port)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__({**env, "SEGFLOW_SEGMENTER_HEALTH_PORT": "1"}, log_path)
        self.url = f"http://127.0.0.1:{env['SEGFLOW_TAGGER_PORT']}"

    def start(self) -> "TaggerProcess":
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [SEGFLOW, "tagger"], env=self.env, stdout=log, stderr=log
            )
        return self


def tagger_env(settings: Settings, journeys: Journeys, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.update(
        DATABASE_URL=settings.database_url or "",
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        SEGFLOW_TOPIC_EVENTS=settings.topic_events,
        SEGFLOW_TOPIC_SEGMENT_CHANGES=settings.topic_segment_changes,
        SEGFLOW_TOPIC_DEAD_LETTER=settings.topic_dead_letter,
        SEGFLOW_TAGGER_GROUP=settings.tagger_group,
        SEGFLOW_TAGGER_PORT=str(free_port()),
        SEGFLOW_TAGGER_INTERVAL_SECONDS="0.05",
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="2000",
        SEGFLOW_SMTP_PORT=str(journeys.mailbox.port),
        SEGFLOW_SMTP_TIMEOUT_SECONDS="0.2",
        SEGFLOW_JOURNEY_SEND_LEASE_SECONDS="1",
        SEGFLOW_MAILBOX_DIR=str(journeys.mailbox.store.directory),
        SEGFLOW_UNSUBSCRIBE_KEYS=KEYS,
        SEGFLOW_JOURNEY_DEFAULT_TIMEZONE=midday_zone(datetime.now(UTC)),
    )
    env.update(overrides)
    return env


async def test_kill_9_after_smtp_sends_no_step_twice(
    journeys: Journeys, settings: Settings, tmp_path: Path
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    # Entered two hours ago on the real clock: the welcome email is due now.
    journeys.clock.now = datetime.now(UTC) - timedelta(hours=2)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    log = tmp_path / "tagger.log"

    crashing = TaggerProcess(
        tagger_env(settings, journeys, SEGFLOW_CRASH_AT="after_smtp:1"), log
    ).start()
    try:
        code = await crashing.wait_exit(60)
    finally:
        await crashing.stop()
    assert code == -signal.SIGKILL, crashing.log_tail()
    assert len(journeys.mailbox.messages()) == 1
    assert [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, "sending")]

    restarted = TaggerProcess(tagger_env(settings, journeys), log).start()
    try:

        async def settled() -> bool:
            restarted.assert_alive()
            return [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, "sent")]

        await poll(settled, 30, "the interrupted send to be settled")
    finally:
        code = await restarted.stop()
    assert code == 0, restarted.log_tail()
    assert len(journeys.mailbox.messages()) == 1
    enrolment = await journeys.enrolment(customer)
    assert enrolment["step_index"] == 1 and enrolment["state"] == "active"
