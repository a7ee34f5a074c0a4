"""Calculated query cost, as Shopify defines it: an object costs 1, a scalar or enum 0, a
connection 2 plus its page size times the cost of one node, and a mutation field 10.

The requested cost is read from the document before it runs (page sizes from `first`, lists of
nodes from the number of ids asked for); the actual cost applies the same rules to the data
that came back, so an empty page or a missing node costs less than was charged up front.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    is_composite_type,
)
from graphql.execution.values import VariableValues, get_argument_values

MUTATION_COST = 10
CONNECTION_COST = 2
# The single-query limit Shopify enforces on the requested cost.
MAX_QUERY_COST = 1000


@dataclass(frozen=True)
class _Walk:
    schema: GraphQLSchema
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: VariableValues | None


def operation_costs(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues | None,
    data: Mapping[str, Any] | None = None,
) -> int:
    """The requested cost of `operation` (data None) or its actual cost given the data it
    returned. Mutation fields cost 10 each, whatever they select."""
    if operation.operation == OperationType.MUTATION:
        fields = _fields(operation.selection_set, None, None)
        return MUTATION_COST * sum(1 for node, _ in fields if not node.name.value.startswith("__"))
    root = schema.query_type
    if root is None:
        return 0
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    walk = _Walk(schema, fragments, variables)
    return _selection_cost(walk, operation.selection_set, root, data, page=None)


def _fields(
    selection_set: SelectionSetNode,
    parent: GraphQLCompositeType | None,
    walk: _Walk | None,
) -> Iterator[tuple[FieldNode, GraphQLCompositeType | None]]:
    """Every field selected, fragments flattened, with the type it is selected on."""
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection, parent
        elif isinstance(selection, InlineFragmentNode):
            on = parent
            if walk is not None and selection.type_condition is not None:
                found = walk.schema.get_type(selection.type_condition.name.value)
                on = found if is_composite_type(found) else parent
            yield from _fields(selection.selection_set, on, walk)
        elif isinstance(selection, FragmentSpreadNode) and walk is not None:
            fragment = walk.fragments.get(selection.name.value)
            if fragment is not None:
                found = walk.schema.get_type(fragment.type_condition.name.value)
                on = found if is_composite_type(found) else parent
                yield from _fields(fragment.selection_set, on, walk)


def _field_def(parent: GraphQLCompositeType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        found: GraphQLField | None = parent.fields.get(name)
        return found
    return None


def _is_list(field: GraphQLField) -> bool:
    field_type = field.type
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    return isinstance(field_type, GraphQLList)


def _selection_cost(
    walk: _Walk,
    selection_set: SelectionSetNode,
    parent: GraphQLCompositeType,
    data: Mapping[str, Any] | None,
    page: int | None,
) -> int:
    total = 0
    for node, on in _fields(selection_set, parent, walk):
        name = node.name.value
        field = _field_def(on, name)
        if name.startswith("__") or field is None:
            continue
        named = get_named_type(field.type)
        if not is_composite_type(named) or node.selection_set is None:
            continue
        key = node.alias.value if node.alias else name
        if data is not None and key not in data:
            continue  # a fragment on another type: nothing was resolved for it here
        value = None if data is None else data[key]
        total += _field_cost(walk, node, field, named, value, data is None, page)
    return total


def _field_cost(
    walk: _Walk,
    node: FieldNode,
    field: GraphQLField,
    named: GraphQLCompositeType,
    value: Any,
    requested: bool,
    page: int | None,
) -> int:
    selection = node.selection_set
    if selection is None:
        return 0
    if named.name.endswith("Connection"):
        size = _page_size(field, node, walk) if requested else None
        if not requested and value is None:
            return 0
        return CONNECTION_COST + _selection_cost(walk, selection, named, value, size)
    # Edges and page info are the connection's own bookkeeping: its nodes are what cost.
    own = 0 if named.name.endswith("Edge") or named.name == "PageInfo" else 1
    if requested:
        count = _list_length(field, node, walk, page) if _is_list(field) else 1
        return count * (own + _selection_cost(walk, selection, named, None, None))
    items = value if isinstance(value, list) else [value]
    return sum(own + _selection_cost(walk, selection, named, item, None) for item in items if item)


def _arguments(field: GraphQLField, node: FieldNode, walk: _Walk) -> dict[str, Any]:
    try:
        return get_argument_values(field, node, walk.variables)
    except Exception:  # noqa: BLE001 - execution reports bad arguments; cost assumes none
        return {}


def _page_size(field: GraphQLField, node: FieldNode, walk: _Walk) -> int:
    arguments = _arguments(field, node, walk)
    size = arguments.get("first") or arguments.get("last") or 1
    return max(int(size), 0)


def _list_length(field: GraphQLField, node: FieldNode, walk: _Walk, page: int | None) -> int:
    """How many items a list field may return: its connection's page size, the number of ids
    asked for (`nodes(ids:)`), else 1 (a short list of errors or parameters)."""
    if page is not None:
        return page
    ids = _arguments(field, node, walk).get("ids")
    return len(ids) if isinstance(ids, list) else 1
