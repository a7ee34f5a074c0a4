"""The GraphQL documents the client sends, with the cost Shopify is expected to ask for each
(a first estimate; the client learns the real requested cost from the responses)."""

CUSTOMER_TAGS = """
query CustomerTags($ids: [ID!]!) {
  nodes(ids: $ids) { ... on Customer { id tags } }
}"""

TAGS_ADD = """
mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id ... on Customer { tags } }
    userErrors { field message }
  }
}"""

TAGS_REMOVE = """
mutation TagsRemove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) {
    node { id ... on Customer { tags } }
    userErrors { field message }
  }
}"""

# Bulk lines select no tags: the result file then stays small (one line per customer).
BULK_TAGS_ADD = """mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""

BULK_TAGS_REMOVE = """mutation TagsRemove($id: ID!, $tags: [String!]!) {
  tagsRemove(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""

EMAIL_CONSENT = """
mutation EmailConsent($input: CustomerEmailMarketingConsentUpdateInput!) {
  customerEmailMarketingConsentUpdate(input: $input) {
    customer { id emailMarketingConsent { marketingState } }
    userErrors { field message code }
  }
}"""

WEBHOOK_SUBSCRIPTIONS = """
query WebhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    nodes { id topic uri }
    pageInfo { hasNextPage endCursor }
  }
}"""

WEBHOOK_SUBSCRIPTION_CREATE = """
mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}"""

STAGED_UPLOADS_CREATE = """
mutation StagedUpload($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}"""

BULK_RUN_MUTATION = """
mutation BulkRun($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""

# node(id:) works on every API version (bulkOperation(id:) only from 2026-04 on).
BULK_OPERATION = """
query BulkOperation($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount url partialDataUrl }
  }
}"""

CHECK_ACCESS = """
query CheckAccess {
  shop { name myshopifyDomain ianaTimezone }
  currentAppInstallation { accessScopes { handle } }
}"""

MUTATION_COST = 10
