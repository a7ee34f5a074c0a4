"""One-off import of a store's existing customers, orders and products (CSV / JSONL exports)."""
