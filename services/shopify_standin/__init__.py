"""A local stand-in for Shopify's Admin GraphQL API: shops, customers, tags, consent, webhook
subscriptions and echoes, staged uploads and bulk mutations, the cost extension and its leaky
bucket, and injectable faults. Tests, benchmarks and `segflow dev` talk to it over real HTTP
with the same client code that talks to Shopify."""
