"""The customer's name in the profile: kept from every customer payload, newest wins, an
absent name is unknown (never erases one), and it lives where the rest of the profile does."""

from services.segmenter.domain.reducer import apply
from services.segmenter.domain.state import CustomerState
from services.segmenter.importer.graphql import customer_payload
from services.segmenter.storage.rows import profile_to_json, state_from_row
from tests.unit.segmenter.events import CUSTOMER, SHOP, at, order, shopify_event


def customer(updated: int, **fields: object) -> dict[str, object]:
    return {"id": CUSTOMER, "updated_at": at(updated).isoformat(), **fields}


def names(state: CustomerState) -> tuple[object, object]:
    return state.attribute("first_name"), state.attribute("last_name")


def test_a_customer_payload_gives_the_name_and_a_newer_one_replaces_it() -> None:
    state = CustomerState(SHOP, CUSTOMER)
    state = apply(state, shopify_event("customers/create", customer(5, first_name="Ada")))
    assert names(state) == ("Ada", None)
    state = apply(
        state,
        shopify_event("customers/update", customer(2, first_name="Adelaide", last_name="Byron")),
    )
    assert names(state) == ("Adelaide", "Byron")


def test_an_older_payload_or_one_without_names_leaves_the_name() -> None:
    state = CustomerState(SHOP, CUSTOMER)
    state = apply(state, shopify_event("customers/update", customer(2, first_name="Ada")))
    # Delivered late: an older version of the profile does not win.
    state = apply(state, shopify_event("customers/update", customer(5, first_name="Old")))
    # Apps without protected-data access get no name keys, or empty strings: unknown.
    state = apply(state, shopify_event("customers/update", customer(1, email="a@example.com")))
    state = apply(state, shopify_event("customers/update", customer(0, first_name="")))
    assert names(state) == ("Ada", None)


def test_the_customer_embedded_in_an_order_gives_the_name() -> None:
    payload = order(1, "20.00", placed=at(1))
    payload["customer"] = {**payload["customer"], "first_name": "Grace", "last_name": "Hopper"}
    state = apply(CustomerState(SHOP, CUSTOMER), shopify_event("orders/create", payload))
    assert names(state) == ("Grace", "Hopper")


def test_a_graphql_export_gives_the_name() -> None:
    node = {"id": f"gid://shopify/Customer/{CUSTOMER}", "firstName": "Ada", "lastName": "L"}
    payload = customer_payload(node)
    state = apply(CustomerState(SHOP, CUSTOMER), shopify_event("customers/update", payload))
    assert names(state) == ("Ada", "L")


def test_the_name_is_stored_in_the_profile_column_and_read_back() -> None:
    state = apply(
        CustomerState(SHOP, CUSTOMER),
        shopify_event("customers/update", customer(1, first_name="Ada", last_name="Lovelace")),
    )
    text = profile_to_json(state)
    assert '"first_name":["Ada"' in text
    row = {
        "shop_id": SHOP,
        "customer_id": CUSTOMER,
        "profile": text,
        "checkouts": "{}",
        "last_engaged_at": None,
        "deleted": False,
        **dict.fromkeys(
            (
                "page_views",
                "product_views",
                "added_to_cart",
                "emails_opened",
                "emails_clicked",
                "reviews_written",
                "referrals",
            ),
            0,
        ),
    }
    assert names(state_from_row(row, {})) == ("Ada", "Lovelace")
