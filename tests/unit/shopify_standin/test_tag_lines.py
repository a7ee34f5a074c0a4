"""The fast bulk-line executor returns what graphql-core returns for the same document and
variables, and refuses (None) every document shape it does not handle."""

from typing import Any

import pytest
from graphql import ExecutionResult, execute, parse

from services.shopify_standin.context import RequestContext, Runtime
from services.shopify_standin.resolvers import executable_schema
from services.shopify_standin.state import Customer, StandinState
from services.shopify_standin.tag_lines import compile_tag_lines
from services.shopify_standin.webhooks import WebhookDispatcher

# Each document, with the names it gives the customer id and tags variables.
DOCUMENTS = [
    """mutation A($id: ID!, $tags: [String!]!) {
      tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
    }""",
    """mutation R($c: ID!, $t: [String!]!) {
      out: tagsRemove(id: $c, tags: $t) {
        __typename
        n: node { __typename id ... on Customer { tags } }
        errs: userErrors { message __typename }
      }
    }""",
    """mutation A($id: ID!, $tags: [String!]!) {
      tagsAdd(id: $id, tags: $tags) { node { ... on Node { id } } }
    }""",
]
VARIABLES: list[dict[str, Any]] = [
    {"id": "gid://shopify/Customer/1", "tags": ["New", "red"]},
    {"id": "gid://shopify/Customer/404", "tags": ["x"]},
    {"id": "gid://shopify/Customer/2", "tags": "single, two"},
    {"id": "not-a-gid", "tags": ["x"]},
    {"id": "gid://shopify/Customer/1", "tags": ["y" * 256]},
    {"id": None, "tags": ["x"]},
    {"id": "gid://shopify/Customer/2", "tags": ["ok", None]},
]
NAMES = [("id", "tags"), ("c", "t"), ("id", "tags")]


def context() -> RequestContext:
    state = StandinState()
    shop = state.add_shop("a.myshopify.com", "token", "secret", 1000, 100)
    shop.customers[1] = Customer(id=1, email="a@example.com", tags=["Red"])
    shop.customers[2] = Customer(id=2, email="b@example.com")
    return RequestContext(Runtime(state, WebhookDispatcher(state)), shop, "http://x", "2026-04")


def _messages(row: dict[str, Any]) -> list[str]:
    return [error["message"] for error in row.get("errors", [])]


@pytest.mark.parametrize(("text", "names"), list(zip(DOCUMENTS, NAMES, strict=True)))
def test_the_fast_path_matches_graphql_core(text: str, names: tuple[str, str]) -> None:
    document = parse(text)
    fast = compile_tag_lines(document)
    assert fast is not None
    fast_ctx, slow_ctx = context(), context()
    for given in VARIABLES:
        variables = {names[0]: given["id"], names[1]: given["tags"]}
        ours = fast(fast_ctx, variables)
        if ours is None:  # variables that do not fit: graphql-core words the errors
            assert given["id"] is None or None in given["tags"]
            continue
        result = execute(
            executable_schema(), document, context_value=slow_ctx, variable_values=variables
        )
        assert isinstance(result, ExecutionResult)
        assert ours.get("data") == result.data, variables
        assert _messages(ours) == [e.message for e in result.errors or []], variables
    for number in (1, 2):
        assert fast_ctx.shop.customers[number].tags == slow_ctx.shop.customers[number].tags


@pytest.mark.parametrize(
    "text",
    [
        'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["x"]) { node { id } } }',
        "mutation A($id: ID!) { tagsAdd(id: $id, tags: []) { node { id } } }",
        """mutation A($id: ID!, $tags: [String!]!) {
          tagsAdd(id: $id, tags: $tags) { node { id } }
          tagsRemove(id: $id, tags: $tags) { node { id } }
        }""",
        """mutation A($id: ID!, $tags: [String!]!) {
          tagsAdd(id: $id, tags: $tags) { node { ...F } }
        }
        fragment F on Customer { id }""",
        """mutation A($id: ID! = "gid://shopify/Customer/1", $tags: [String!]!) {
          tagsAdd(id: $id, tags: $tags) { node { id } }
        }""",
        """mutation A($id: ID!, $tags: [String!]!) {
          tagsAdd(id: $id, tags: $tags) @skip(if: false) { node { id } }
        }""",
        """mutation C($input: CustomerEmailMarketingConsentUpdateInput!) {
          customerEmailMarketingConsentUpdate(input: $input) { userErrors { message } }
        }""",
    ],
)
def test_other_shapes_are_left_to_graphql_core(text: str) -> None:
    assert compile_tag_lines(parse(text)) is None
