"""The journeys API on the tagger's app (bearer token of the shop; another shop's journey or
customer is a 404): journeys CRUD with JourneyIn bodies, a customer's enrolments, and a
journey's lift report over its stored enrolments, sends and conversions.

A step's template is checked when the journey is saved: a key must name a shipped template,
and a merchant's own email must compile in the sandbox, use only the documented variables
and render with sample values; otherwise the answer is a 422 naming the step and part
(`steps[0].own_template.html`). Body shape errors stay 400s naming the field."""

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from services.api.lookup import path_id
from services.common.auth import ShopDep, shop_gone
from services.common.envelope import PayloadError, parse_payload_object
from services.common.errors import ApiError, bad_request
from services.common.fastpath import body_schema
from services.tagger import journeys_store as store
from services.tagger.email.templates import (
    SHIPPED_TEMPLATE_FILES,
    EmailTemplates,
    TemplateError,
    TemplateSource,
)
from services.tagger.journeys.holdout import Group
from services.tagger.journeys.model import JourneyIn
from services.tagger.journeys.stats import GroupCounts, lift_report

CUSTOMER_KNOWN = "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _journey_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "version": row["current_version"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        **store.stored_definition(row),
    }


def _plain(value: Any) -> Any:
    """A report's dataclasses as JSON: money as strings (exact), floats as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Decimal):
        return str(value)
    return value


def _id(value: str, what: str) -> int:
    found = path_id(value)
    if found is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return found


async def journey_body(request: Request) -> JourneyIn:
    """The JourneyIn of the body, read by hand once the key was checked (a parameter of the
    route would be parsed before it); anything unreadable is a 400 naming the field."""
    try:
        return JourneyIn.model_validate(parse_payload_object(await request.body()))
    except PayloadError as exc:
        raise ApiError(400, "invalid_request", str(exc), field="body") from exc
    except ValidationError as exc:
        raise bad_request(exc, "invalid_request") from exc


_JOURNEY_BODY = body_schema(
    JourneyIn,
    {
        "handle": "thanks",
        "name": "Thank you",
        "trigger": {"segment": "repeat-customer"},
        "steps": [{"key": "thanks", "timing": {"after": "PT2H"}, "template": "welcome.hello"}],
    },
)


def check_templates(body: JourneyIn, templates: EmailTemplates) -> None:
    """A 422 ApiError naming the step (and part) whose template cannot be used."""
    for index, step in enumerate(body.steps):
        where = f"steps[{index}].template"
        if step.own_template is None:
            if step.template not in SHIPPED_TEMPLATE_FILES:
                raise ApiError(
                    422,
                    "invalid_template",
                    f"{where}: no shipped template {step.template!r}; name one of "
                    f"{', '.join(SHIPPED_TEMPLATE_FILES)}, or give the step's own_template "
                    "{subject, html, text}",
                    field=where,
                )
            continue
        own = step.own_template
        where = f"steps[{index}].own_template"
        try:
            templates.check(TemplateSource(own.subject, own.text, own.html), name=where)
        except TemplateError as exc:
            field = f"{where}.{exc.part}" if exc.part else where
            raise ApiError(422, "invalid_template", str(exc), field=field) from None


def journeys_router() -> APIRouter:
    router = APIRouter(prefix="/v1")
    templates = EmailTemplates()

    async def one(pool: asyncpg.Pool, shop_id: int, journey_id: int) -> asyncpg.Record:
        rows = await pool.fetch(store.JOURNEYS_OF_SHOP, shop_id, journey_id)
        if not rows:
            raise ApiError(404, "not_found", "no such journey")
        row: asyncpg.Record = rows[0]
        return row

    @router.get("/journeys")
    async def list_journeys(request: Request, shop: ShopDep) -> dict[str, Any]:
        """The shop's journeys, each with its current definition."""
        rows = await request.app.state.pool.fetch(store.JOURNEYS_OF_SHOP, shop.id, None)
        return {"journeys": [_journey_json(r) for r in rows]}

    @router.post("/journeys", status_code=201, openapi_extra=_JOURNEY_BODY)
    async def create(request: Request, shop: ShopDep) -> dict[str, Any]:
        """A new journey (version 1); 409 when the handle is taken, 422 for a bad template."""
        body = await journey_body(request)
        check_templates(body, templates)
        pool = request.app.state.pool
        try:
            async with pool.acquire() as conn, conn.transaction():
                journey_id = await store.create_journey(conn, shop.id, body, datetime.now(UTC))
        except asyncpg.ForeignKeyViolationError as exc:
            gone = shop_gone(exc)
            if gone is None:
                raise
            raise gone from exc
        if journey_id is None:
            raise ApiError(409, "conflict", "a journey with this handle exists", field="handle")
        return _journey_json(await one(pool, shop.id, journey_id))

    @router.get("/journeys/{journey_id}")
    async def read(request: Request, shop: ShopDep, journey_id: str) -> dict[str, Any]:
        return _journey_json(await one(request.app.state.pool, shop.id, _id(journey_id, "journey")))

    @router.put("/journeys/{journey_id}", openapi_extra=_JOURNEY_BODY)
    async def replace(request: Request, shop: ShopDep, journey_id: str) -> dict[str, Any]:
        """Save an edit; a path-shaping one makes a new version (enrolments keep theirs). An
        own email's content is not versioned: the edit reaches in-flight enrolments."""
        found = _id(journey_id, "journey")
        body = await journey_body(request)
        check_templates(body, templates)
        pool = request.app.state.pool
        try:
            async with pool.acquire() as conn, conn.transaction():
                version = await store.update_journey(conn, shop.id, found, body, datetime.now(UTC))
        except store.HandleTakenError:
            raise ApiError(
                409, "conflict", "another journey has this handle", field="handle"
            ) from None
        if version is None:
            raise ApiError(404, "not_found", "no such journey")
        return _journey_json(await one(pool, shop.id, found))

    @router.delete("/journeys/{journey_id}", status_code=204)
    async def delete(request: Request, shop: ShopDep, journey_id: str) -> Response:
        found = _id(journey_id, "journey")
        async with request.app.state.pool.acquire() as conn:
            if not await store.delete_journey(conn, shop.id, found):
                raise ApiError(404, "not_found", "no such journey")
        return Response(status_code=204)

    @router.get("/journeys/{journey_id}/stats")
    async def stats(request: Request, shop: ShopDep, journey_id: str) -> dict[str, Any]:
        """Treated against holdout, intent-to-treat (stats.lift_report)."""
        pool = request.app.state.pool
        found = _id(journey_id, "journey")
        await one(pool, shop.id, found)
        counts = {Group.TREATED: GroupCounts(0), Group.HOLDOUT: GroupCounts(0)}
        for row in await pool.fetch(store.STATS, found):
            counts[Group(row["grp"])] = GroupCounts(
                # sum() of counts is numeric in PostgreSQL: back to int.
                entered=int(row["entered"]),
                sent=int(row["sent"]),
                deferred=int(row["deferred"]),
                exited=int(row["exited"]),
                converted=int(row["converted"]),
                revenue=Decimal(row["revenue"]),
                revenue_squares=Decimal(row["revenue_squares"]),
            )
        report = lift_report(counts[Group.TREATED], counts[Group.HOLDOUT])
        return {"journey_id": str(found), **_plain(report)}

    @router.get("/customers/{customer_id}/enrolments")
    async def enrolments(request: Request, shop: ShopDep, customer_id: str) -> dict[str, Any]:
        """The customer's enrolments: journey, state, steps sent and the next one due."""
        found = _id(customer_id, "customer")
        pool = request.app.state.pool
        # Another shop's (or an unknown) customer is a 404, not an empty list.
        if await pool.fetchval(CUSTOMER_KNOWN, shop.id, found) is None:
            raise ApiError(404, "not_found", "no such customer")
        rows = await pool.fetch(store.CUSTOMER_ENROLMENTS, shop.id, found)
        return {
            "customer_id": str(found),
            "enrolments": [
                {
                    "id": str(r["id"]),
                    "journey_id": str(r["journey_id"]),
                    "journey": r["handle"],
                    "version": r["journey_version"],
                    "group": r["grp"],
                    "state": r["state"],
                    "entered_at": _iso(r["entered_at"]),
                    "steps_sent": r["steps_sent"],
                    "next_step": r["step_index"] if r["state"] == "active" else None,
                    "next_due_at": _iso(r["next_due_at"]),
                    "exited_at": _iso(r["exited_at"]),
                    "exit_reason": r["exit_reason"],
                }
                for r in rows
            ],
        }

    return router
