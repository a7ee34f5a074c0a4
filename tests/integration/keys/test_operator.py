"""The operator's endpoints: closed without an operator token, 401 for a wrong one or a shop's
key, open to the operator token (and its previous one); the operator token opens no shop's
data. Registration answers every credential once, each with its own power."""

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr, ValidationError

from services.api.app import create_app as create_api
from services.common.settings import Settings
from services.common.shops import Kind, ShopCredentials
from tests.integration.keys.support import OPERATOR, OPERATOR_PREVIOUS, keyed, served

ROUTES: tuple[tuple[str, str, dict[str, str] | None], ...] = (
    ("POST", "/v1/admin/shops", {"domain": "new-shop.myshopify.com"}),
    ("GET", "/v1/admin/shops", None),
    ("POST", "/v1/admin/shops/test-shop.myshopify.com/credentials/admin/rotate", {}),
)


async def test_without_an_operator_token_the_admin_endpoints_are_closed(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    app = create_api(settings.model_copy(update={"operator_token": None}))
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        for method, path, body in ROUTES:
            for header in (None, "Bearer", "Bearer x", f"Bearer {shop.api_token}", "Basic x"):
                headers = {"Authorization": header} if header else {}
                answer = await http.request(method, path, json=body, headers=headers)
                assert answer.status_code == 403, (path, header, answer.text)
                assert answer.json()["error"]["code"] == "operator_disabled"
        metrics = (await http.get("/metrics")).text
    assert 'segflow_auth_refusals_total{outcome="operator_disabled"} 15.0' in metrics
    assert await db.fetchval("SELECT count(*) FROM shops") == 1
    assert await db.fetchval("SELECT count(*) FROM shop_credentials") == 5


async def test_only_the_operator_token_opens_them_and_it_opens_no_shop_data(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    app = create_api(keyed(settings, operator_token_previous=SecretStr(OPERATOR_PREVIOUS)))
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        for method, path, body in ROUTES:
            for token in ("", "wrong", OPERATOR + "x", OPERATOR[:-1], *map(shop.of, _KINDS)):
                headers = {"Authorization": f"Bearer {token}" if token else "Bearer"}
                answer = await http.request(method, path, json=body, headers=headers)
                assert answer.status_code == 401, (path, token[:6], answer.text)
                assert answer.json()["error"]["code"] == "unauthorized"
        assert await db.fetchval("SELECT count(*) FROM shop_credentials") == 5

        for token in (OPERATOR, OPERATOR_PREVIOUS):
            listed = await http.get("/v1/admin/shops", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200, listed.text
            [only] = listed.json()["shops"]
            assert only["domain"] == shop.domain
            kinds = sorted(c["kind"] for c in only["credentials"])
            assert kinds == ["admin", "events", "flow", "read", "webhook"]
            for secret in map(shop.of, _KINDS):
                assert secret not in listed.text

        for path in ("/v1/segments", "/v1/customers/1/segments", "/v1/customers/1"):
            answer = await http.get(path, headers={"Authorization": f"Bearer {OPERATOR}"})
            assert answer.status_code == 401, path
            assert answer.json()["error"]["code"] == "unauthorized"


async def test_registering_a_shop_answers_each_credential_once_with_its_power(
    settings: Settings, db: asyncpg.Connection
) -> None:
    app = create_api(keyed(settings))
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    async with served(app) as url, httpx.AsyncClient(base_url=url, headers=operator) as http:
        created = await http.post(
            "/v1/admin/shops",
            json={"domain": "New-Shop.myshopify.com", "webhook_secret": "s" * 32},
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["domain"] == "new-shop.myshopify.com"
        assert body["segments_installed"] > 0 and body["journeys_installed"] == 3
        creds = body["credentials"]
        assert creds["webhook_secret"] == "s" * 32
        again = await http.post("/v1/admin/shops", json={"domain": "new-shop.myshopify.com"})
        assert again.status_code == 409 and again.json()["error"]["field"] == "domain"
        bad = await http.post("/v1/admin/shops", json={"domain": "not a domain"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "domain"
        unknown_kind = await http.post(
            "/v1/admin/shops/new-shop.myshopify.com/credentials/root/rotate", json={}
        )
        assert unknown_kind.status_code == 404
        no_shop = await http.post(
            "/v1/admin/shops/nobody.myshopify.com/credentials/read/rotate", json={}
        )
        assert no_shop.status_code == 404
        given_token = await http.post(
            "/v1/admin/shops/new-shop.myshopify.com/credentials/admin/rotate",
            json={"secret": "x" * 40},
        )
        assert given_token.status_code == 400 and given_token.json()["error"]["field"] == "secret"
        too_long = await http.post(
            "/v1/admin/shops/new-shop.myshopify.com/credentials/read/rotate",
            json={"grace_seconds": 31 * 86400},
        )
        assert too_long.status_code == 400

    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:

        async def get(path: str, key: str) -> int:
            answer = await http.get(path, headers={"Authorization": f"Bearer {key}"})
            return answer.status_code

        assert await get("/v1/segments", creds["admin_token"]) == 200
        assert await get("/v1/segments", creds["read_key"]) == 403
        assert await get("/v1/segments", creds["events_key"]) == 403
        assert await get("/v1/customers/1/segments", creds["read_key"]) == 404
        assert await get("/v1/customers/1/segments", creds["events_key"]) == 403


_KINDS = tuple(Kind)


def test_an_operator_token_must_be_long_and_the_previous_needs_a_current() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(operator_token=SecretStr("short"))
    with pytest.raises(ValidationError, match="needs SEGFLOW_OPERATOR_TOKEN"):
        Settings(operator_token_previous=SecretStr(OPERATOR))
    with pytest.raises(ValidationError, match="development only"):
        Settings(environment="production", demo_read_key="sfread_x")


def segflow(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [str(Path(sys.executable).with_name("segflow")), "shops", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def test_the_cli_creates_rotates_and_lists_with_the_same_functions(
    database_url: str, db: asyncpg.Connection
) -> None:
    created = segflow(database_url, "create", "cli-shop.myshopify.com")
    assert created.returncode == 0, created.stdout + created.stderr
    printed = {
        line[:16].strip(): line[16:].split()[0]
        for line in created.stdout.splitlines()
        if len(line) > 16 and line[16:].strip()
    }
    assert printed["read key"].startswith("sfread_")
    assert printed["events key"].startswith("sfevt_")
    again = segflow(database_url, "create", "cli-shop.myshopify.com")
    assert again.returncode == 1 and "exists already" in again.stdout

    rotated = segflow(
        database_url, "rotate", "cli-shop.myshopify.com", "read", "--grace-seconds", "0"
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    new_read = rotated.stdout.split()[2]
    assert new_read.startswith("sfread_") and new_read != printed["read key"]
    listed = segflow(database_url, "list")
    assert listed.returncode == 0
    [line] = [x for x in listed.stdout.splitlines() if "cli-shop" in x]
    assert line.split("\t")[3].split() == ["admin", "events", "flow", "read", "webhook"]
    assert new_read not in listed.stdout
    bad_grace = segflow(
        database_url, "rotate", "cli-shop.myshopify.com", "read", "--grace-seconds", "-1"
    )
    assert bad_grace.returncode == 2
    nobody = segflow(database_url, "rotate", "nobody.myshopify.com", "read")
    assert nobody.returncode == 2
