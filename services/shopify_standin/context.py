"""What a resolver can reach: the stand-in's runtime (state, webhook dispatcher, background
bulk runs) and the request's shop."""

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from services.shopify_standin.state import Shop, StandinState
from services.shopify_standin.webhooks import WebhookDispatcher


@dataclass
class Runtime:
    """One per running stand-in: its state, its webhook dispatcher and its background tasks."""

    state: StandinState
    dispatcher: WebhookDispatcher
    # Signs staged-upload keys, so an upload names a target this stand-in handed out.
    upload_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    tasks: set["asyncio.Task[None]"] = field(default_factory=set)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` in the background; it is cancelled when the stand-in stops."""
        task = asyncio.create_task(work, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        """Cancel background work and wait for it, then stop the webhook deliveries."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.dispatcher.stop()

    def sign_upload(self, key: str) -> str:
        """The signature parameter a staged upload of `key` must carry."""
        return hmac.new(self.upload_secret, key.encode(), hashlib.sha256).hexdigest()


@dataclass
class RequestContext:
    """The GraphQL context: the runtime, the shop the access token named, the base URL the
    request came in on (upload and result URLs point back at it) and the API version."""

    runtime: Runtime
    shop: Shop
    base_url: str
    api_version: str
