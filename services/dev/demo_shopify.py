"""`segflow dev`'s local Shopify: the stand-in and the mailbox run inside the supervisor, the
demo shop is created on the stand-in (in SEGFLOW_DEMO_SHOP_TIMEZONE) and connected, so the
tagger writes its tags there, its quiet hours know the shop's zone, and Shopify's echo webhooks
come back to ingest, signed, as they would from Shopify."""

import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from services.common.sealing import new_key_text
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.tagger.connections import connect_shop


@dataclass(frozen=True)
class DemoShopify:
    """Where the demo shop lives on the stand-in, and its admin token there."""

    standin_url: str
    admin_token: str


def dev_sealing_keys(settings: Settings) -> str:
    """SEGFLOW_SEALING_KEYS for this data dir: the environment's, else a key kept in the data
    dir (made on first start), so tokens sealed by an earlier run still open."""
    if settings.sealing_keys is not None:
        return settings.sealing_keys.get_secret_value()
    path: Path = settings.data_dir / "sealing.key"
    if not path.exists():
        path.write_text(new_key_text("dev") + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def dev_unsubscribe_keys(settings: Settings) -> str:
    """SEGFLOW_UNSUBSCRIBE_KEYS for this data dir: the environment's, else a key kept in the
    data dir (made on first start), so unsubscribe links in mail of an earlier run still work."""
    if settings.unsubscribe_keys is not None:
        return settings.unsubscribe_keys.get_secret_value()
    path: Path = settings.data_dir / "unsubscribe.key"
    if not path.exists():
        path.write_text(f"dev:{secrets.token_urlsafe(32)}\n")
        path.chmod(0o600)
    return path.read_text().strip()


async def connect_demo_shop(
    settings: Settings, database_url: str, demo: ShopCredentials, standin_url: str
) -> DemoShopify:
    """Create the demo shop on the (fresh, in-memory) stand-in, with customers made on first
    tag write, and connect it: its webhooks go to ingest."""
    token = settings.demo_shopify_token or f"shpat_{secrets.token_hex(16)}"
    async with httpx.AsyncClient(base_url=standin_url, timeout=10) as http:
        created = await http.post(
            "/_standin/shops",
            json={
                "domain": demo.domain,
                "access_token": token,
                "webhook_secret": demo.webhook_secret,
                "auto_create_customers": True,
                "iana_timezone": settings.demo_shop_timezone,
            },
        )
        created.raise_for_status()
    conn = await asyncpg.connect(database_url)
    try:
        await connect_shop(
            conn,
            settings,
            demo.shop_id,
            demo.domain,
            token,
            admin_url=standin_url,
            callback_url=f"http://{settings.host}:{settings.ingest_port}/webhooks/shopify",
        )
    finally:
        await conn.close()
    return DemoShopify(standin_url, token)
