// Stockstream on Azure: one resource group with Cosmos DB (event store = outbox), Service Bus
// (topic inventory-events), a Flex Consumption function app running as a managed identity,
// Log Analytics + Application Insights, alerts and the pipeline health workbook.
//
// Deploy with `azd up` (see docs/deploy.md). No keys or connection strings: every data-plane
// access is an Entra role assignment to the function's user-assigned identity.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd: AZURE_ENV_NAME); names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Azure region of every resource (azd: AZURE_LOCATION).')
param location string

@description('Resource group name; empty means rg-<environmentName>.')
param resourceGroupName string = ''

@description('Tags added to every resource.')
param tags object = {}

@description('Cosmos DB capacity: serverless (pay per request, dev and small shops) or autoscale (shared database throughput, production).')
@allowed([
  'serverless'
  'autoscale'
])
param cosmosThroughputMode string = 'serverless'

@description('Autoscale maximum RU/s of the database (autoscale mode only; it scales between 10% and 100% of this).')
@minValue(1000)
@maxValue(1000000)
param cosmosAutoscaleMaxThroughput int = 4000

@description('Cosmos DB database name (the app setting COSMOS_DATABASE).')
param cosmosDatabaseName string = 'stockstream'

@description('Service Bus tier: Standard, or Premium for isolation and predictable latency.')
@allowed([
  'Standard'
  'Premium'
])
param serviceBusSku string = 'Standard'

@description('Premium messaging units (Premium only).')
@minValue(1)
@maxValue(16)
param serviceBusPremiumCapacity int = 1

@description('Days the topic remembers message ids to drop duplicates; longer than the worst relay retry gap (1-7).')
@minValue(1)
@maxValue(7)
param duplicateDetectionWindowDays int = 1

@description('Deliveries of a message before it is dead-lettered, on every subscription.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int = 10

@description('Downstream teams\' subscriptions: [{ name, requiresSession, filter, principalId?, principalType? }], filter being { correlationProperties: { <application property>: <value> } } or { sql: <SQL filter expression> }. Each also gets the two replayTarget rules, and its principal (principalType ServicePrincipal by default, or Group, User) Azure Service Bus Data Receiver on that subscription.')
param downstreamSubscriptions array = []

@description('Until this date (inclusive, ISO-8601) the relay also publishes deprecated event versions next to the current ones (app setting STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL).')
param deprecatedVersionsUntil string = '2027-05-31'

@description('Counts whose drift exceeds this many units are held for approval; empty: no unit limit (app setting STOCKSTREAM_DRIFT_HOLD_UNITS).')
param driftHoldUnits string = ''

@description('Counts whose drift exceeds this percent of the on hand at count time are held for approval; empty: the default, 50; off: no percent limit (app setting STOCKSTREAM_DRIFT_HOLD_PERCENT).')
param driftHoldPercent string = '50'

@description('Days between physical counts per velocity class (app setting STOCKSTREAM_COUNT_CADENCE).')
param countCadence string = 'A=1,B=7,C=30'

@description('How long ids are recognised per SKU-location: Idempotency-Key, closed order, count id (app setting STOCKSTREAM_IDEMPOTENCY_WINDOW).')
param idempotencyWindow string = '7d'

@description('Adjustments whose delta exceeds this many units are held for approval; empty: no unit limit (app setting STOCKSTREAM_ADJUSTMENT_HOLD_UNITS).')
param adjustmentHoldUnits string = ''

@description('Adjustments whose delta exceeds this percent of the on hand before them are held for approval; empty or off: no percent limit (app setting STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT).')
param adjustmentHoldPercent string = ''

@description('How far back a count\'s counted_at may be, e.g. 7d, 36h, 90m (app setting STOCKSTREAM_COUNT_MAX_AGE).')
param countMaxAge string = '7d'

@description('How often the order sweep runs, e.g. 60, 90s, 2m (app setting STOCKSTREAM_ORDER_SWEEP_INTERVAL; the Azure timer runs every minute).')
param orderSweepInterval string = '60'

@description('Maximum instances of the Flex Consumption app (40-1000).')
@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

@description('Memory per function instance in MB.')
@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Days Log Analytics keeps logs and metrics.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Email addresses of a new action group that receives every alert.')
param alertEmails array = []

@description('Resource id of an existing action group to notify instead (takes precedence over alertEmails).')
param existingActionGroupId string = ''

@description('Active messages on inventory-events held for 15 minutes that mean consumers are falling behind.')
@minValue(1)
param backlogThreshold int = 1000

@description('Cosmos DB 429 responses in 5 minutes that raise an alert.')
@minValue(1)
param throttledRequestsThreshold int = 10

@description('Failed function invocations in 5 minutes that raise an alert.')
@minValue(1)
param functionFailuresThreshold int = 5

@description('Relay lag in seconds (commit to publish) that raises an alert.')
@minValue(1)
param relayLagThresholdSeconds int = 60

@description('Projection lag in seconds (commit to applied) that raises an alert.')
@minValue(1)
param projectionLagThresholdSeconds int = 120

@description('Units a physical count may differ from the recorded on hand before an alert.')
@minValue(1)
param driftThresholdUnits int = 10

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, {
  'azd-env-name': environmentName
  application: 'stockstream'
})
var names = {
  identity: 'id-stockstream-${resourceToken}'
  workspace: 'log-stockstream-${resourceToken}'
  appInsights: 'appi-stockstream-${resourceToken}'
  storage: 'ststock${resourceToken}'
  deploymentContainer: 'deployment-package'
  cosmos: 'cosmos-stockstream-${resourceToken}'
  serviceBus: 'sb-stockstream-${resourceToken}'
  plan: 'plan-stockstream-${resourceToken}'
  functionApp: 'func-stockstream-${resourceToken}'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    location: location
    tags: allTags
    retentionInDays: logRetentionDays
    functionPrincipalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: names.storage
    location: location
    tags: allTags
    deploymentContainerName: names.deploymentContainer
    functionPrincipalId: identity.outputs.principalId
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    accountName: names.cosmos
    location: location
    tags: allTags
    databaseName: cosmosDatabaseName
    throughputMode: cosmosThroughputMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
    functionPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    namespaceName: names.serviceBus
    location: location
    tags: allTags
    sku: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    duplicateDetectionWindowDays: duplicateDetectionWindowDays
    maxDeliveryCount: maxDeliveryCount
    downstreamSubscriptions: downstreamSubscriptions
    functionPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

// Takes every other module's outputs, so it is created after all role assignments exist.
module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmos.outputs.databaseName
    serviceBusNamespace: serviceBus.outputs.fullyQualifiedNamespace
    deprecatedVersionsUntil: deprecatedVersionsUntil
    driftHoldUnits: driftHoldUnits
    driftHoldPercent: driftHoldPercent
    countCadence: countCadence
    idempotencyWindow: idempotencyWindow
    adjustmentHoldUnits: adjustmentHoldUnits
    adjustmentHoldPercent: adjustmentHoldPercent
    countMaxAge: countMaxAge
    orderSweepInterval: orderSweepInterval
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: 'stockstream-${environmentName}'
    location: location
    tags: allTags
    serviceBusId: serviceBus.outputs.id
    cosmosAccountId: cosmos.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmails: alertEmails
    existingActionGroupId: existingActionGroupId
    backlogThreshold: backlogThreshold
    throttledRequestsThreshold: throttledRequestsThreshold
    functionFailuresThreshold: functionFailuresThreshold
    relayLagThresholdSeconds: relayLagThresholdSeconds
    projectionLagThresholdSeconds: projectionLagThresholdSeconds
    driftThresholdUnits: driftThresholdUnits
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'Stockstream pipeline health (${environmentName})'
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    serviceBusId: serviceBus.outputs.id
    cosmosAccountId: cosmos.outputs.id
  }
}

@description('Region the environment was deployed to.')
output AZURE_LOCATION string = location

@description('Resource group holding every resource.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Function app name (azd deploys the api service to it).')
output FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Base URL of the HTTP API (append /api/...).')
output FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'

@description('Client id of the function app\'s managed identity (AZURE_CLIENT_ID).')
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Cosmos DB account endpoint (COSMOS__accountEndpoint).')
output COSMOS_ACCOUNT_ENDPOINT string = cosmos.outputs.endpoint

@description('Cosmos DB database name (COSMOS_DATABASE).')
output COSMOS_DATABASE string = cosmos.outputs.databaseName

@description('Service Bus namespace host (SERVICEBUS__fullyQualifiedNamespace).')
output SERVICEBUS_NAMESPACE string = serviceBus.outputs.fullyQualifiedNamespace

@description('Topic every event is published to.')
output SERVICEBUS_TOPIC string = serviceBus.outputs.topicName

@description('Subscriptions on the topic: availability and the downstream teams\'.')
output SERVICEBUS_SUBSCRIPTIONS array = serviceBus.outputs.subscriptionNames

@description('Application Insights component name (logs, custom metrics, log alerts).')
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName

@description('Resource id of the pipeline health workbook.')
output WORKBOOK_ID string = workbook.outputs.id

@description('Action groups the alerts notify (empty: alerts fire without notifying anyone).')
output ALERT_ACTION_GROUP_IDS array = alerts.outputs.actionGroupIds
