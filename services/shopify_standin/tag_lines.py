"""A direct executor for the one document shape bulk tag runs send, so 100,000 lines take
seconds: `tagsAdd|tagsRemove(id: $a, tags: $b)` selecting `node` (its id, __typename and, on
Customer, tags) and `userErrors { field message }`, aliases allowed.

It calls the same resolver code as the GraphQL executor and returns the same data; a document
of any other shape gets None from `compile_tag_lines` and runs through graphql-core instead.
"""

from collections.abc import Callable, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)

from services.shopify_standin.context import RequestContext
from services.shopify_standin.resolvers import change_tags

# A row of the result file, or None when the line's variables do not fit the document (then
# graphql-core runs the line, and words its errors).
LineExecutor = Callable[[RequestContext, Mapping[str, Any]], dict[str, Any] | None]
# What each level may select: (field name -> what it may select below it, or None for a leaf).
_NODE: dict[str, Any] = {"id": None, "__typename": None, "tags": None}
_ERROR: dict[str, Any] = {"field": None, "message": None, "__typename": None}


def _plain(selection_set: SelectionSetNode | None, allowed: dict[str, Any], on: str) -> bool:
    """True when the selections are fields named in `allowed` (recursively), or inline
    fragments on `on` or Node holding such fields; no directives, no fragment spreads. (The
    document was validated already: this only decides whether the fast path can run it.)"""
    if selection_set is None:
        return False
    for selection in selection_set.selections:
        if selection.directives:
            return False
        if isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else on
            if condition not in (on, "Node") or not _plain(selection.selection_set, allowed, on):
                return False
        elif isinstance(selection, FieldNode):
            name = selection.name.value
            if name not in allowed or selection.arguments:
                return False
            below = allowed[name]
            if (below is None) != (selection.selection_set is None):
                return False
            if below is not None and not _plain(selection.selection_set, below, on):
                return False
        else:
            return False
    return True


def _project(value: Any, selection_set: SelectionSetNode, typename: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for selection in selection_set.selections:
        if isinstance(selection, InlineFragmentNode):
            out.update(_project(value, selection.selection_set, typename))
            continue
        if not isinstance(selection, FieldNode):
            continue
        key = selection.alias.value if selection.alias else selection.name.value
        name = selection.name.value
        if name == "__typename":
            out[key] = typename
        elif selection.selection_set is None:
            out[key] = value.get(name)
        elif name == "node":
            node = value.get("node")
            out[key] = None if node is None else _project(node, selection.selection_set, "Customer")
        else:  # userErrors
            errors = value.get(name) or []
            out[key] = [_project(e, selection.selection_set, "UserError") for e in errors]
    return out


def compile_tag_lines(document: DocumentNode) -> LineExecutor | None:
    """A fast executor for `document` if it has the bulk tag shape, else None."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(document.definitions) != 1 or len(operations) != 1 or operations[0].directives:
        return None
    if any(d.default_value is not None for d in operations[0].variable_definitions or ()):
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1:
        return None
    root = selections[0]
    if not isinstance(root, FieldNode) or root.name.value not in ("tagsAdd", "tagsRemove"):
        return None
    arguments = {a.name.value: a.value for a in root.arguments or ()}
    if set(arguments) != {"id", "tags"} or root.directives:
        return None
    id_value, tags_value = arguments["id"], arguments["tags"]
    if not isinstance(id_value, VariableNode) or not isinstance(tags_value, VariableNode):
        return None
    payload_allowed = {"node": _NODE, "userErrors": _ERROR, "__typename": None}
    if not _plain(root.selection_set, payload_allowed, "Customer"):
        return None
    selection = root.selection_set
    if selection is None:
        return None
    id_name, tags_name = id_value.name.value, tags_value.name.value
    key = root.alias.value if root.alias else root.name.value
    adding = root.name.value == "tagsAdd"
    payload_type = "TagsAddPayload" if adding else "TagsRemovePayload"

    def run(ctx: RequestContext, variables: Mapping[str, Any]) -> dict[str, Any] | None:
        customer_id = variables.get(id_name)
        tags = variables.get(tags_name)
        if isinstance(tags, str):
            tags = [tags]  # a list input given one value, as GraphQL coerces it
        if not isinstance(customer_id, str):
            return None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return None
        try:
            payload = change_tags(ctx, customer_id, tags, adding)
        except GraphQLError as exc:
            error: dict[str, Any] = {"message": exc.message, "path": [key]}
            if exc.extensions:
                error["extensions"] = exc.extensions
            return {"data": {key: None}, "errors": [error]}
        return {"data": {key: _project(payload, selection, payload_type)}}

    return run
