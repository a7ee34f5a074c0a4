"""The subset of Shopify's Admin GraphQL schema the stand-in serves, as SDL.

Type, field, argument and enum names are Shopify's (API 2026-04), so any well-formed document
that selects these fields runs here as it would there; a field outside the subset is refused
with the "doesn't exist on type" error Shopify gives for unknown fields.
"""

from functools import cache

from graphql import GraphQLSchema, build_schema

SDL = """
schema {
  query: QueryRoot
  mutation: Mutation
}

scalar DateTime
scalar URL
scalar UnsignedInt64

interface Node {
  id: ID!
}

interface DisplayableError {
  field: [String!]
  message: String!
}

type QueryRoot {
  customer(id: ID!): Customer
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  webhookSubscription(id: ID!): WebhookSubscription
  webhookSubscriptions(
    first: Int
    after: String
    topics: [WebhookSubscriptionTopic!]
    uri: String
    callbackUrl: URL
    format: WebhookSubscriptionFormat
  ): WebhookSubscriptionConnection!
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
  bulkOperation(id: ID!): BulkOperation
  shop: Shop!
  currentAppInstallation: AppInstallation!
}

type Mutation {
  tagsAdd(id: ID!, tags: [String!]!): TagsAddPayload
  tagsRemove(id: ID!, tags: [String!]!): TagsRemovePayload
  customerEmailMarketingConsentUpdate(
    input: CustomerEmailMarketingConsentUpdateInput!
  ): CustomerEmailMarketingConsentUpdatePayload
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!
    webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
  webhookSubscriptionDelete(id: ID!): WebhookSubscriptionDeletePayload
  stagedUploadsCreate(input: [StagedUploadInput!]!): StagedUploadsCreatePayload
  bulkOperationRunMutation(
    mutation: String!
    stagedUploadPath: String!
    clientIdentifier: String
  ): BulkOperationRunMutationPayload
}

type Shop implements Node {
  id: ID!
  name: String!
  myshopifyDomain: String!
  ianaTimezone: String!
}

type AppInstallation implements Node {
  id: ID!
  accessScopes: [AccessScope!]!
}

type AccessScope {
  handle: String!
  description: String!
}

type Customer implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  email: String
  firstName: String
  lastName: String
  tags: [String!]!
  emailMarketingConsent: CustomerEmailMarketingConsentState
  createdAt: DateTime!
  updatedAt: DateTime!
}

type CustomerEmailMarketingConsentState {
  consentUpdatedAt: DateTime
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingState: CustomerEmailMarketingState!
}

enum CustomerEmailMarketingState {
  NOT_SUBSCRIBED
  PENDING
  SUBSCRIBED
  UNSUBSCRIBED
  REDACTED
  INVALID
}

enum CustomerMarketingOptInLevel {
  SINGLE_OPT_IN
  CONFIRMED_OPT_IN
  UNKNOWN
}

type UserError implements DisplayableError {
  field: [String!]
  message: String!
}

type TagsAddPayload {
  node: Node
  userErrors: [UserError!]!
}

type TagsRemovePayload {
  node: Node
  userErrors: [UserError!]!
}

input CustomerEmailMarketingConsentUpdateInput {
  customerId: ID!
  emailMarketingConsent: CustomerEmailMarketingConsentInput!
}

input CustomerEmailMarketingConsentInput {
  marketingOptInLevel: CustomerMarketingOptInLevel
  marketingState: CustomerEmailMarketingState!
  consentUpdatedAt: DateTime
}

type CustomerEmailMarketingConsentUpdatePayload {
  customer: Customer
  userErrors: [CustomerEmailMarketingConsentUpdateUserError!]!
}

type CustomerEmailMarketingConsentUpdateUserError implements DisplayableError {
  code: CustomerEmailMarketingConsentUpdateUserErrorCode
  field: [String!]
  message: String!
}

enum CustomerEmailMarketingConsentUpdateUserErrorCode {
  INVALID
  INCLUSION
  INTERNAL_ERROR
  MISSING_ARGUMENT
}

enum WebhookSubscriptionTopic {
  APP_UNINSTALLED
  BULK_OPERATIONS_FINISH
  CHECKOUTS_CREATE
  CHECKOUTS_UPDATE
  CUSTOMERS_CREATE
  CUSTOMERS_DELETE
  CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE
  CUSTOMERS_PURCHASING_SUMMARY
  CUSTOMERS_UPDATE
  CUSTOMER_TAGS_ADDED
  CUSTOMER_TAGS_REMOVED
  ORDERS_CANCELLED
  ORDERS_CREATE
  ORDERS_PAID
  ORDERS_UPDATED
  PRODUCTS_CREATE
  PRODUCTS_UPDATE
  REFUNDS_CREATE
}

enum WebhookSubscriptionFormat {
  JSON
  XML
}

input WebhookSubscriptionInput {
  callbackUrl: URL
  uri: String
  format: WebhookSubscriptionFormat
  includeFields: [String!]
  filter: String
}

type ApiVersion {
  handle: String!
  displayName: String!
  supported: Boolean!
}

type WebhookHttpEndpoint {
  callbackUrl: URL!
}

union WebhookSubscriptionEndpoint = WebhookHttpEndpoint

type WebhookSubscription implements Node {
  id: ID!
  legacyResourceId: UnsignedInt64!
  topic: WebhookSubscriptionTopic!
  uri: String!
  callbackUrl: URL!
  endpoint: WebhookSubscriptionEndpoint!
  format: WebhookSubscriptionFormat!
  includeFields: [String!]!
  filter: String
  apiVersion: ApiVersion!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type PageInfo {
  endCursor: String
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
}

type WebhookSubscriptionEdge {
  cursor: String!
  node: WebhookSubscription!
}

type WebhookSubscriptionConnection {
  edges: [WebhookSubscriptionEdge!]!
  nodes: [WebhookSubscription!]!
  pageInfo: PageInfo!
}

type WebhookSubscriptionCreatePayload {
  userErrors: [UserError!]!
  webhookSubscription: WebhookSubscription
}

type WebhookSubscriptionDeletePayload {
  deletedWebhookSubscriptionId: ID
  userErrors: [UserError!]!
}

enum StagedUploadTargetGenerateUploadResource {
  BULK_MUTATION_VARIABLES
  FILE
  IMAGE
}

enum StagedUploadHttpMethodType {
  POST
  PUT
}

input StagedUploadInput {
  resource: StagedUploadTargetGenerateUploadResource!
  filename: String!
  mimeType: String!
  httpMethod: StagedUploadHttpMethodType = PUT
  fileSize: UnsignedInt64
}

type StagedUploadParameter {
  name: String!
  value: String!
}

type StagedMediaUploadTarget {
  parameters: [StagedUploadParameter!]!
  resourceUrl: URL
  url: URL
}

type StagedUploadsCreatePayload {
  stagedTargets: [StagedMediaUploadTarget!]
  userErrors: [UserError!]!
}

enum BulkOperationStatus {
  CANCELED
  CANCELING
  COMPLETED
  CREATED
  EXPIRED
  FAILED
  RUNNING
}

enum BulkOperationErrorCode {
  ACCESS_DENIED
  INTERNAL_SERVER_ERROR
  TIMEOUT
}

enum BulkOperationType {
  QUERY
  MUTATION
}

type BulkOperation implements Node {
  id: ID!
  completedAt: DateTime
  createdAt: DateTime!
  errorCode: BulkOperationErrorCode
  fileSize: UnsignedInt64
  objectCount: UnsignedInt64!
  partialDataUrl: URL
  query: String!
  rootObjectCount: UnsignedInt64!
  status: BulkOperationStatus!
  type: BulkOperationType!
  url: URL
}

enum BulkMutationErrorCode {
  OPERATION_IN_PROGRESS
  INVALID_MUTATION
  INVALID_STAGED_UPLOAD_FILE
  NO_SUCH_FILE
  INTERNAL_FILE_SERVER_ERROR
  LIMIT_REACHED
}

type BulkMutationUserError implements DisplayableError {
  code: BulkMutationErrorCode
  field: [String!]
  message: String!
}

type BulkOperationRunMutationPayload {
  bulkOperation: BulkOperation
  userErrors: [BulkMutationUserError!]!
}
"""


@cache
def admin_schema() -> GraphQLSchema:
    """The schema, built once per process (it is immutable; resolvers are bound per request)."""
    return build_schema(SDL)
