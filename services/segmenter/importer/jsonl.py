"""JSONL exports → records: GraphQL bulk-operation output or REST-shaped objects, told per line.

A bulk operation writes one object per line and lifts every nested connection out of its
parent: an order's line items follow it as lines of their own carrying
`"__parentId": "gid://shopify/Order/1"`. Children always come after their parent (right after
it unless the operation ran with `groupObjects: false`), so the last `window` top-level objects
are held open for their children and an object is emitted once it leaves that window:
memory stays bounded however large the file is.

A line without a GID or `__parentId` is read as a REST object (snake_case, as in webhooks).
"""

import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.envelope import PayloadError, loads_json
from services.segmenter.importer import graphql
from services.segmenter.importer.records import (
    CANCELLED_ORDER_TOPIC,
    CUSTOMER_TOPIC,
    ORDER_TOPIC,
    PRODUCT_TOPIC,
    ImportRecord,
    Rejection,
)

DEFAULT_WINDOW = 2000
_LINE_ITEM_KEYS = ("quantity", "product", "variant")
_REST_TOPICS = {"Customer": CUSTOMER_TOPIC, "Order": ORDER_TOPIC, "Product": PRODUCT_TOPIC}


def order_topic(payload: Mapping[str, Any]) -> str:
    """orders/cancelled for a cancelled order (the webhook that carries that state), else create."""
    return CANCELLED_ORDER_TOPIC if payload.get("cancelled_at") else ORDER_TOPIC


def rest_topic(payload: Mapping[str, Any]) -> str | None:
    """The topic of a REST-shaped object: from its GID when present, else from its keys."""
    kind = graphql.gid_type(payload.get("admin_graphql_api_id"))
    if kind is None:
        if any(key in payload for key in ("line_items", "total_price", "financial_status")):
            kind = "Order"
        elif any(key in payload for key in ("product_type", "variants", "handle")):
            kind = "Product"
        elif any(
            key in payload
            for key in ("orders_count", "default_address", "email_marketing_consent", "addresses")
        ):
            kind = "Customer"
    topic = _REST_TOPICS.get(kind or "")
    return order_topic(payload) if topic == ORDER_TOPIC else topic


def _is_graphql(obj: Mapping[str, Any]) -> bool:
    return "__parentId" in obj or "__typename" in obj or graphql.gid_type(obj.get("id")) is not None


@dataclass
class _Node:
    data: dict[str, Any]
    line: int
    children: list["_Node"] = field(default_factory=list)


class BulkAssembler:
    """Reattaches `__parentId` children to the last `window` top-level objects seen."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._window = window
        self._roots: OrderedDict[str, _Node] = OrderedDict()
        # Every open object by GID → (its top-level object's GID, the node).
        self._open: dict[str, tuple[str, _Node]] = {}
        self._members: dict[str, list[str]] = {}

    def add(self, obj: dict[str, Any], line: int) -> list[ImportRecord | Rejection]:
        """Take one line's object; return the objects that left the window (complete now)."""
        parent = obj.pop("__parentId", None)
        gid = obj.get("id") if isinstance(obj.get("id"), str) else None
        if parent is None:
            if gid is None:
                return [Rejection(line, "a top-level object without a GID id")]
            done = self._emit(gid) if gid in self._roots else []
            node = _Node(obj, line)
            self._roots[gid] = node
            self._open[gid] = (gid, node)
            self._members[gid] = [gid]
            while len(self._roots) > self._window:
                done += self._emit(next(iter(self._roots)))
            return done
        found = self._open.get(parent) if isinstance(parent, str) else None
        if found is None:
            reason = (
                f"its parent {parent} is not among the {self._window} top-level objects before it "
                "(export with groupObjects: true, the default)"
            )
            return [Rejection(line, reason)]
        root, parent_node = found
        node = _Node(obj, line)
        parent_node.children.append(node)
        if gid is not None:
            self._open[gid] = (root, node)
            self._members[root].append(gid)
        return []

    def finish(self) -> Iterator[ImportRecord | Rejection]:
        """Emit every object still open (at the end of the file)."""
        while self._roots:
            yield from self._emit(next(iter(self._roots)))

    def _emit(self, gid: str) -> list[ImportRecord | Rejection]:
        node = self._roots.pop(gid)
        for member in self._members.pop(gid):
            self._open.pop(member, None)
        try:
            return _records(node)
        except ValueError as exc:
            return [Rejection(node.line, str(exc))]


def _is_line_item(node: _Node) -> bool:
    kind = graphql.object_type(node.data)
    return kind == "LineItem" or (kind is None and any(k in node.data for k in _LINE_ITEM_KEYS))


def _order_record(node: _Node, customer_id: int | None = None) -> ImportRecord:
    lines = [child.data for child in node.children if _is_line_item(child)]
    refunds = [c.data for c in node.children if graphql.object_type(c.data) == "Refund"]
    payload = graphql.order_payload(node.data, lines, refunds, customer_id)
    return ImportRecord(order_topic(payload), payload, node.line)


def _records(node: _Node) -> list[ImportRecord | Rejection]:
    kind = graphql.object_type(node.data)
    if kind == "Order":
        return [_order_record(node)]
    if kind == "Product":
        return [ImportRecord(PRODUCT_TOPIC, graphql.product_payload(node.data), node.line)]
    if kind == "Customer":
        payload = graphql.customer_payload(node.data)
        found: list[ImportRecord | Rejection] = [ImportRecord(CUSTOMER_TOPIC, payload, node.line)]
        for child in node.children:
            if graphql.object_type(child.data) == "Order":
                try:
                    found.append(_order_record(child, payload["id"]))
                except ValueError as exc:
                    found.append(Rejection(child.line, str(exc)))
        return found
    return [Rejection(node.line, f"objects of type {kind or 'unknown'} are not imported")]


def read_jsonl(
    lines: Iterable[str], *, window: int = DEFAULT_WINDOW
) -> Iterator[ImportRecord | Rejection]:
    """Records (or rejections) for the objects of a JSONL file, in file order of completion."""
    assembler = BulkAssembler(window)
    for number, text in enumerate(lines, start=1):
        text = text.strip()
        if not text:
            continue
        try:
            obj = loads_json(text)
        except json.JSONDecodeError as exc:
            yield Rejection(number, f"not JSON: {exc.msg} at column {exc.colno}")
            continue
        except PayloadError as exc:
            yield Rejection(number, f"not JSON: {exc}")
            continue
        except ValueError as exc:
            # int() refuses integers past 4,300 digits: a line, not the import, is refused.
            yield Rejection(number, f"not JSON: {exc}"[:200])
            continue
        if not isinstance(obj, dict):
            yield Rejection(number, "not a JSON object")
        elif _is_graphql(obj):
            yield from assembler.add(obj, number)
        else:
            topic = rest_topic(obj)
            if topic is None:
                yield Rejection(number, "neither a customer, an order nor a product")
            else:
                yield ImportRecord(topic, obj, number)
    yield from assembler.finish()
