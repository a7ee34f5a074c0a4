"""Review 13b: merchants' own templates that the checks let through although they break a
guarantee (each fails on the code it was written against): the unsubscribe link every email
must show, and bounded work when a template is checked or rendered."""

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, time
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from services.tagger.journeys.timing import QuietHours, is_quiet, load_zone, quiet_hours_end
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys
from tests.integration.tagger.journeys.test_journey_api import token_of
from tests.integration.tagger.journeys.test_journey_own_templates import OWN, body, enter, parts


class _Links(HTMLParser):
    """The hrefs of the <a> elements a mail client shows (not those in comments or in the
    raw text of <style>/<script>)."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value or "" for name, value in attrs if name == "href"]


@pytest.mark.parametrize("hiding", ["<!--", "<style>"])
async def test_review13b_an_own_template_cannot_hide_the_unsubscribe_link(
    journeys: Journeys, tagger_url: str, hiding: str
) -> None:
    """Finding: the layout appends the unsubscribe link after the merchant's HTML, but the
    HTML's literal markup is not escaped or checked, so a body ending in an unclosed `<!--`
    (or `<style>`) swallows the layout's footer: the email is sent with its unsubscribe link
    inside a comment, shown to nobody (Gmail/Yahoo require a visible one). Such a template
    must be refused (422) or its markup closed before the footer."""
    own = {**OWN, "html": f"<h1>Hello {{{{ first_name }}}}</h1>{hiding}"}
    auth = {"Authorization": f"Bearer {await token_of(journeys)}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        created = await http.post("/v1/journeys", json=body(own))
    if created.status_code == 422:
        return  # refused: the guarantee holds
    assert created.status_code == 201, created.text
    await enter(journeys, 1, "Ada")
    await journeys.at(NOW + HOUR, journeys.scheduler())
    [sent] = journeys.mailbox.messages()
    email = sent.parse()
    link = str(email["List-Unsubscribe"]).strip("<>")
    _, html = parts(email)
    links = _Links()
    # As HTML5 reads comments (Python's parser does not): one runs to the next --> or the end.
    links.feed(re.sub(r"<!--.*?(?:-->|\Z)", "", html, flags=re.S))
    links.close()
    assert link in links.hrefs, f"the unsubscribe link is not shown: {links.hrefs}"


_CHECK = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from services.tagger.email.templates import EmailTemplates, TemplateError, TemplateSource
try:
    EmailTemplates().check(TemplateSource("Hi", None, json.loads(sys.argv[1])))
except TemplateError as exc:
    print("refused:", exc)
else:
    print("accepted")
"""

_BLOWUPS: list[Any] = [
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        id="nested-ranges",
    ),
    pytest.param("{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}", id="loop-of-repeats"),
]


@pytest.mark.parametrize("html", _BLOWUPS)
def test_review13b_checking_an_own_template_is_bounded_work(html: str) -> None:
    """Finding: `*`, `**` and each `range` are bounded, but not their products: nested loops
    (10^10 iterations) or a loop of allowed repetitions (1 GB of output) pass every bound.
    Checking such a template (the journeys API's create/edit does it on its event loop)
    spins the tagger's process or exhausts its memory; it should be refused at once, not
    end in a timeout or a MemoryError. Run in a child with 1 GB of address space, 20 s."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHECK, json.dumps(html)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("checking the template did not end within 20 s")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused:"), done.stdout
    assert "MemoryError" not in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("zone", "moment"),
    [
        ("America/New_York", datetime(2024, 3, 9, 7, 15, tzinfo=UTC)),
        ("Europe/Chisinau", datetime(2024, 3, 30, 0, 15, tzinfo=UTC)),
        ("Antarctica/Troll", datetime(2024, 3, 30, 2, 30, tzinfo=UTC)),
    ],
)
def test_review13b_the_end_of_quiet_hours_is_never_inside_them(zone: str, moment: datetime) -> None:
    """Finding (an edge): when DST skips the quiet hours' end and the clock lands past their
    start again (quiet hours spanning midnight, with less than the DST jump outside them),
    quiet_hours_end answers the gap's end, an instant is_quiet calls quiet: the send is put
    inside the quiet hours it was deferred for. Found by a sweep of zones and quiet hours."""
    # Quiet all day but a quarter of an hour (Troll's jump is two hours: all but 90 min).
    late = zone == "Antarctica/Troll"
    quiet = QuietHours(time(2, 30), time(1, 0)) if late else QuietHours(time(2, 15), time(2, 0))
    tz = load_zone(zone)
    assert is_quiet(moment, tz, quiet)
    ended = quiet_hours_end(moment, tz, quiet)
    assert ended > moment
    assert not is_quiet(ended, tz, quiet), (ended, ended.astimezone(tz))
