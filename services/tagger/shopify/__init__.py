"""segflow's Admin GraphQL client: the same code talks to Shopify and to the local stand-in.

`AdminClient` paces every request from the shop's bucket as the responses report it, retries
throttles, 429s, 5xx and network failures with jittered backoff up to a bound and then raises
`ShopifyUnavailable` (the tagger parks the operation), and returns userErrors to the caller.
"""

from services.tagger.shopify.client import AdminClient
from services.tagger.shopify.errors import (
    ShopifyAuthError,
    ShopifyBulkError,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyUnavailable,
)
from services.tagger.shopify.metrics import ShopifyClientMetrics
from services.tagger.shopify.models import (
    AccessCheck,
    BulkLineFailure,
    BulkResult,
    ConsentResult,
    EnsureResult,
    TagsResult,
    UserError,
    WebhookSubscription,
)
from services.tagger.shopify.pacer import Pacer, PacerRegistry

__all__ = [
    "AccessCheck",
    "AdminClient",
    "BulkLineFailure",
    "BulkResult",
    "ConsentResult",
    "EnsureResult",
    "Pacer",
    "PacerRegistry",
    "ShopifyAuthError",
    "ShopifyBulkError",
    "ShopifyClientMetrics",
    "ShopifyError",
    "ShopifyGraphQLError",
    "ShopifyUnavailable",
    "TagsResult",
    "UserError",
    "WebhookSubscription",
]
