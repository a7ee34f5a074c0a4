"""Merchants' own email templates as data, over the journeys API on real HTTP, a real
PostgreSQL and a real SMTP mailbox: the email sent carries the merchant's subject and body
(escaped, with the unsubscribe link added), an edit reaches an enrolment already on its way
without a new version, and templates that are unsafe, unknown or broken are a 422 naming the
step and part."""

from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys
from tests.integration.tagger.journeys.test_journey_api import token_of

OWN = {
    "subject": "{{ first_name }}, a note from {{ shop_name }}",
    "html": "<h1>Hello {{ first_name }}</h1><p>Thanks for coming back.</p>",
}


def body(template: Any, handle: str = "thanks", after: str = "PT1H") -> dict[str, Any]:
    """A one-step journey: `template` is a shipped key (a string) or the step's own template."""
    which = "template" if isinstance(template, str) else "own_template"
    return {
        "handle": handle,
        "name": "Thank you",
        "trigger": {"segment": "repeat-customer"},
        "steps": [{"key": "thanks", "timing": {"after": after}, which: template}],
        # Everyone treated: the test reads each entrant's email.
        "holdout_share": 0,
    }


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # As parsed from the wire: CRLF line ends.
    return text.replace("\r\n", "\n"), html


async def enter(journeys: Journeys, customer: int, first_name: str) -> None:
    await journeys.customer(customer, segments=("repeat-customer",), first_name=first_name)
    await journeys.change(customer, "repeat-customer")


async def test_the_email_sent_is_the_merchants_and_an_edit_reaches_it_in_flight(
    journeys: Journeys, tagger_url: str
) -> None:
    auth = {"Authorization": f"Bearer {await token_of(journeys)}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        created = await http.post("/v1/journeys", json=body(OWN))
        assert created.status_code == 201, created.text
        journey = created.json()
        assert journey["steps"][0]["own_template"] == OWN
        path = f"/v1/journeys/{journey['id']}"

        await enter(journeys, 1, "Ada <b>")
        scheduler = journeys.scheduler()
        await journeys.at(NOW + HOUR, scheduler)
        [sent] = journeys.mailbox.messages()
        email = sent.parse()
        assert email["Subject"] == "Ada <b>, a note from " + journeys.domain.split(".")[0]
        text, html = parts(email)
        assert "<h1>Hello Ada &lt;b&gt;</h1><p>Thanks for coming back.</p>" in html
        # No text body given: the text part is the HTML's text.
        assert text.startswith("Hello Ada <b>\n\nThanks for coming back.")
        # The template has no unsubscribe link; every email still shows one, in both parts.
        link = str(email["List-Unsubscribe"]).strip("<>")
        assert link in text and f'href="{link}"' in html

        # Customer 2 is on the way (due in an hour) when the merchant fixes the email.
        await enter(journeys, 2, "Grace")
        edited_template = {**OWN, "subject": "Thank you, {{ first_name }}", "text": "Hi!"}
        edited = await http.put(path, json=body(edited_template))
        assert edited.status_code == 200, edited.text
        assert edited.json()["version"] == 1  # content is not a path change
        shown = (await http.get(path)).json()["steps"][0]["own_template"]
        assert shown == edited_template
        await journeys.at(NOW + 2 * HOUR + timedelta(minutes=1), scheduler)
        second = journeys.mailbox.messages()[1].parse()
        assert second["Subject"] == "Thank you, Grace"
        assert parts(second)[0].startswith("Hi!\n")

        # Back to a shipped template is a path change: a new version.
        shipped = await http.put(path, json=body("welcome.hello"))
        assert shipped.json()["version"] == 2
        assert shipped.json()["steps"][0]["template"] == "welcome.hello"
        assert "own_template" not in shipped.json()["steps"][0]


REFUSED = [
    (
        {**OWN, "html": "{{ ''.__class__.__mro__ }}"},
        "steps[0].own_template.html",
        "access to attribute '__class__'",
    ),
    (
        {**OWN, "html": "{{ cycler.__init__.__globals__ }}"},
        "steps[0].own_template.html",
        "unknown variable cycler",
    ),
    ({**OWN, "subject": "Hi {{ frist_name }}"}, "steps[0].own_template.subject", "frist_name"),
    ({**OWN, "text": "Hi {% if %}"}, "steps[0].own_template.text", "line 1"),
    ({**OWN, "html": "{{ 'x' * 100000000 }}"}, "steps[0].own_template.html", "repetition"),
    ("welcome.nope", "steps[0].template", "no shipped template 'welcome.nope'"),
    ("own", "steps[0].template", "no shipped template 'own'"),
]


@pytest.mark.parametrize(("template", "field", "problem"), REFUSED)
async def test_an_unsafe_or_broken_template_is_a_422_naming_it(
    journeys: Journeys, tagger_url: str, template: Any, field: str, problem: str
) -> None:
    auth = {"Authorization": f"Bearer {await token_of(journeys)}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        refused = await http.post("/v1/journeys", json=body(template))
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_template", field)
        assert problem in error["message"]
        assert await journeys.db.fetchval("SELECT count(*) FROM journey_templates") == 0
        # An edit is checked the same way, and the stored email stays as it was.
        created = await http.post("/v1/journeys", json=body(OWN, handle="kept"))
        path = f"/v1/journeys/{created.json()['id']}"
        again = await http.put(path, json=body(template, handle="kept"))
        assert again.status_code == 422 and again.json()["error"]["field"] == field
        assert (await http.get(path)).json()["steps"][0]["own_template"] == OWN


async def test_a_badly_shaped_template_is_a_400_naming_the_field(
    journeys: Journeys, tagger_url: str
) -> None:
    auth = {"Authorization": f"Bearer {await token_of(journeys)}"}
    both = body(OWN)
    both["steps"][0]["template"] = "welcome.hello"
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        no_html = await http.post("/v1/journeys", json=body({"subject": "Hi"}))
        two = await http.post("/v1/journeys", json=both)
    assert no_html.status_code == 400
    assert no_html.json()["error"]["field"] == "steps[0].own_template.html"
    assert two.status_code == 400 and "exactly one of template" in two.json()["error"]["message"]
