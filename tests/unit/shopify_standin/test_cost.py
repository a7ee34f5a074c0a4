"""Calculated query cost: requested from the document, actual from the data returned."""

from typing import Any

from graphql import OperationDefinitionNode, parse
from graphql.execution.values import VariableValues, get_variable_values

from services.shopify_standin.cost import operation_costs
from services.shopify_standin.resolvers import executable_schema


def costs(query: str, variables: dict[str, Any] | None = None, data: Any = None) -> int:
    schema = executable_schema()
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
    assert isinstance(coerced, VariableValues)
    return operation_costs(schema, document, operation, coerced, data)


def test_objects_cost_one_and_scalars_nothing() -> None:
    assert costs('{ customer(id: "gid://shopify/Customer/1") { id tags } }') == 1
    query = (
        '{ customer(id: "gid://shopify/Customer/1") { emailMarketingConsent { marketingState } } }'
    )
    assert costs(query) == 2


def test_nodes_cost_per_id_asked_for_and_per_node_returned() -> None:
    query = "query Q($ids: [ID!]!) { nodes(ids: $ids) { id ... on Customer { tags } } }"
    ids = {"ids": [f"gid://shopify/Customer/{n}" for n in range(40)]}
    assert costs(query, ids) == 40
    returned = {"nodes": [{"id": "a", "tags": []}, None, None]}
    assert costs(query, ids, returned) == 1


def test_connections_cost_two_plus_page_size_times_a_node() -> None:
    query = """query { webhookSubscriptions(first: 7) {
      edges { cursor node { id apiVersion { handle } } } pageInfo { hasNextPage } } }"""
    assert costs(query) == 2 + 7 * 2
    page = {
        "edges": [{"cursor": "c", "node": {"id": "x", "apiVersion": {"handle": "h"}}}],
        "pageInfo": {"hasNextPage": False},
    }
    assert costs(query, data={"webhookSubscriptions": page}) == 2 + 2


def test_fragments_count_like_the_fields_they_hold() -> None:
    query = """query { a: customer(id: "gid://shopify/Customer/1") { ...C }
      b: customer(id: "gid://shopify/Customer/2") { ...C } }
      fragment C on Customer { emailMarketingConsent { marketingState } }"""
    assert costs(query) == 4


def test_each_mutation_field_costs_ten() -> None:
    query = """mutation { a: tagsAdd(id: "x", tags: ["t"]) { node { id } userErrors { message } }
      b: tagsRemove(id: "x", tags: ["t"]) { node { id } } __typename }"""
    assert costs(query) == 20
