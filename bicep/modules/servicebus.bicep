// Service Bus: the topic every inventory event is published to (session id = SKU-location),
// the availability subscription that feeds the projections (without sessions), and the
// downstream teams' subscriptions (sessions as each team chooses).
//
// Every subscription receives a message only through two rules: replayTarget = 'all' (normal
// publishing) and replayTarget = '<its own name>' (a dead-letter replay aimed at it), so a
// replay reaches only the subscription that failed. The first of them *is* the rule named
// $Default: a subscription is created with an accept-everything $Default, and whether Azure
// removes it when another rule is created through Resource Manager is reported both ways
// (terraform-provider-azurerm #20718, pulumi-azure-native #4489). Declaring $Default with the
// intended filter, written after the other rule (dependsOn), gives the same two rules either
// way: no accept-everything rule can survive.
// Local (SAS key) auth is disabled: the function's identity uses Entra roles only.

@description('Namespace name (6-50 letters, digits and hyphens).')
param namespaceName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Standard or Premium.')
@allowed([
  'Standard'
  'Premium'
])
param sku string

@description('Messaging units (Premium only).')
@minValue(1)
@maxValue(16)
param premiumCapacity int

@description('Days the topic remembers message ids to drop duplicates (1-7).')
@minValue(1)
@maxValue(7)
param duplicateDetectionWindowDays int

@description('Deliveries before a message is dead-lettered.')
@minValue(1)
@maxValue(2000)
param maxDeliveryCount int

@description('Downstream subscriptions: [{ name, requiresSession, filter: { correlationProperties: {...} } | { sql: \'...\' }, principalId?, principalType? }]. A team with a principalId gets Azure Service Bus Data Receiver on its own subscription only.')
param downstreamSubscriptions array

@description('Principal id of the function app identity.')
param functionPrincipalId string

@description('Log Analytics workspace receiving the namespace diagnostics.')
param workspaceId string

var topicName = 'inventory-events'
var availabilitySubscriptionName = 'availability'
var roleIds = {
  dataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  dataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  dataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: union({
    name: sku
    tier: sku
  }, (sku == 'Premium') ? {
    capacity: premiumCapacity
  } : {})
  properties: union({
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }, (sku == 'Premium') ? {
    premiumMessagingPartitions: 1
    zoneRedundant: true
  } : {})
}

resource topic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: topicName
  properties: {
    // The relay publishes each event with message id '<stream>:<version>'; a republish after
    // a relay retry within the window is dropped by the broker.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'P${duplicateDetectionWindowDays}D'
    supportOrdering: true
    enablePartitioning: false
    enableBatchedOperations: true
    defaultMessageTimeToLive: 'P14D'
    maxSizeInMegabytes: 5120
  }
}

resource availability 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: topic
  name: availabilitySubscriptionName
  properties: {
    // No sessions: the projection applies "at version V the position is X" per stream and
    // fills gaps from the event store, so delivery order does not matter to it, while one
    // session per sparse SKU-location would hold each session slot for sessionIdleTimeout
    // after every message (docs/azure-capacity.md). Messages still carry the SKU-location
    // session id, so downstream subscriptions with sessions keep per-SKU-location order.
    // requiresSession cannot be changed on an existing subscription: see docs/runbook.md.
    requiresSession: false
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    enableBatchedOperations: true
  }
}

// $Default: normal publishing (replayTarget = 'all'), replacing the accept-everything filter.
resource availabilityAll 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: availability
  name: '$Default'
  dependsOn: [
    availabilitySelf
  ]
  properties: {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: {
        replayTarget: 'all'
      }
    }
  }
}

resource availabilitySelf 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: availability
  name: 'replay-self'
  properties: {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: {
        replayTarget: availabilitySubscriptionName
      }
    }
  }
}

resource downstream 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = [for team in downstreamSubscriptions: {
  parent: topic
  name: team.name
  properties: {
    requiresSession: team.requiresSession
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    deadLetteringOnFilterEvaluationExceptions: true
    enableBatchedOperations: true
  }
}]

// $Default: the team's filter AND replayTarget = 'all' (written after replay-self, see above).
resource downstreamAll 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for (team, i) in downstreamSubscriptions: {
  parent: downstream[i]
  name: '$Default'
  dependsOn: [
    downstreamSelf[i]
  ]
  properties: contains(team.filter, 'sql') ? {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '(${team.filter.?sql ?? 'TRUE'}) AND replayTarget = \'all\''
      compatibilityLevel: 20
    }
  } : {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: union(team.filter.?correlationProperties ?? {}, {
        replayTarget: 'all'
      })
    }
  }
}]

// The team's filter AND replayTarget = '<the subscription>'.
resource downstreamSelf 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = [for (team, i) in downstreamSubscriptions: {
  parent: downstream[i]
  name: 'replay-self'
  properties: contains(team.filter, 'sql') ? {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: '(${team.filter.?sql ?? 'TRUE'}) AND replayTarget = \'${team.name}\''
      compatibilityLevel: 20
    }
  } : {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: union(team.filter.?correlationProperties ?? {}, {
        replayTarget: team.name
      })
    }
  }
}]

// A team's principal (its consumer's managed identity, a service principal or an Entra group)
// may receive from its own subscription and from nothing else: SAS keys are off, so this
// role assignment is a team's only way in.
var teamsWithPrincipal = filter(downstreamSubscriptions, team => contains(team, 'principalId'))

resource teamSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' existing = [for team in teamsWithPrincipal: {
  parent: topic
  name: team.name
}]

resource downstreamReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (team, i) in teamsWithPrincipal: {
  name: guid(teamSubscription[i].id, team.principalId, roleIds.dataReceiver)
  scope: teamSubscription[i]
  dependsOn: [
    downstream
  ]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.dataReceiver)
    principalId: team.principalId
    principalType: team.?principalType ?? 'ServicePrincipal'
  }
}]

// The relay publishes to the topic.
resource dataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, roleIds.dataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.dataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The projections' trigger and the dead-letter replay receive from the topic's subscriptions.
resource dataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, roleIds.dataReceiver)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.dataReceiver)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The Manage claim, which only Data Owner grants, scoped to the one topic. Always granted:
// - the Functions Service Bus trigger lists Data Owner among its roles (Microsoft's
//   "identity-based connections" table for the Service Bus trigger: Data Receiver, Data
//   Owner), and
// - ServiceBusAdministrationClient.get_subscription_runtime_properties (active and
//   dead-letter counts for the metrics timer, the backlog and dead-letter alerts and
//   /api/ops/status) needs Manage.
// Without it the timer fails every minute and those metrics stay empty.
resource dataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, roleIds.dataOwner)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.dataOwner)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = namespace.id
output name string = namespace.name
output fullyQualifiedNamespace string = replace(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')
output topicName string = topic.name
output subscriptionNames array = concat([
  availability.name
], map(downstreamSubscriptions, team => team.name))
