// Alerts: one per failure mode of the pipeline, each with a runbook entry in docs/deploy.md.
//
// Metric alerts use the platform metrics of Service Bus, Cosmos DB and Application Insights.
// Log alerts query the custom metrics the app emits (names in adapters/telemetry.py) in
// Application Insights' customMetrics table.
//
// Which column of customMetrics a log alert reads depends on the instrument (what the Azure
// Monitor exporter sends, azure-monitor-opentelemetry-exporter _convert_point_to_envelope):
// - a histogram row carries valueSum, valueCount, valueMin and valueMax (the point's min and
//   max), so valueMax is the largest sample of the row;
// - a gauge (or counter) row carries one value, valueCount 1 and no min or max, so it is read
//   as valueSum / valueCount and never through valueMin/valueMax.

@description('Name prefix for the alert rules.')
param namePrefix string

@description('Azure region of the log alerts (metric alerts are global).')
param location string

@description('Tags for every resource.')
param tags object

@description('Service Bus namespace resource id.')
param serviceBusId string

@description('Cosmos DB account resource id.')
param cosmosAccountId string

@description('Application Insights resource id.')
param appInsightsId string

@description('Email addresses notified by a new action group (ignored when existingActionGroupId is set).')
param alertEmails array

@description('Resource id of an existing action group to notify instead of creating one.')
param existingActionGroupId string

@description('Active messages in the topic\'s subscriptions that, held for 15 minutes, mean consumers are not keeping up.')
@minValue(1)
param backlogThreshold int

@description('Throttled (429) Cosmos DB requests in 5 minutes that raise an alert.')
@minValue(1)
param throttledRequestsThreshold int

@description('Failed function invocations in 5 minutes that raise an alert.')
@minValue(1)
param functionFailuresThreshold int

@description('Relay lag (seconds from commit to publish) that raises an alert.')
@minValue(1)
param relayLagThresholdSeconds int

@description('Projection lag (seconds from commit to applied) that raises an alert.')
@minValue(1)
param projectionLagThresholdSeconds int

@description('Units a physical count may differ from the recorded on hand before an alert.')
@minValue(1)
param driftThresholdUnits int

var topicName = 'inventory-events'
var createActionGroup = empty(existingActionGroupId) && !empty(alertEmails)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: '${namePrefix}-oncall'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'stockstream'
    enabled: true
    emailReceivers: [for (email, i) in alertEmails: {
      name: 'email-${i}'
      emailAddress: email
      useCommonAlertSchema: true
    }]
  }
}

var actionGroupIds = (!empty(existingActionGroupId)) ? [
  existingActionGroupId
] : (createActionGroup ? [
  actionGroup.id
] : [])

var metricAlertActions = [for id in actionGroupIds: {
  actionGroupId: id
}]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages were dead-lettered on inventory-events: a consumer gave up on an event. Runbook: docs/runbook.md#dead-letters-present.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                topicName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    autoMitigate: true
    actions: metricAlertActions
  }
}

resource backlog 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-backlog-growing'
  location: 'global'
  tags: tags
  properties: {
    description: 'Active messages on inventory-events stayed above the threshold for 15 minutes: consumers are not keeping up. Runbook: docs/runbook.md#consumer-backlog-growing.'
    severity: 2
    enabled: true
    scopes: [
      serviceBusId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'active-messages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                topicName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: backlogThreshold
          // The smallest sample of the window: above the threshold for the whole window.
          timeAggregation: 'Minimum'
        }
      ]
    }
    autoMitigate: true
    actions: metricAlertActions
  }
}

resource throttling 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-cosmos-throttling'
  location: 'global'
  tags: tags
  properties: {
    description: 'Cosmos DB answered requests with 429 (request rate too large). Runbook: docs/runbook.md#cosmos-db-throttling-429.'
    severity: 2
    enabled: true
    scopes: [
      cosmosAccountId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'throttled-requests'
          metricNamespace: 'Microsoft.DocumentDB/databaseAccounts'
          metricName: 'TotalRequests'
          dimensions: [
            {
              name: 'StatusCode'
              operator: 'Include'
              values: [
                '429'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: throttledRequestsThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    autoMitigate: true
    actions: metricAlertActions
  }
}

resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-function-failures'
  location: 'global'
  tags: tags
  properties: {
    description: 'Function invocations failed (HTTP 5xx, relay, projection or timer errors). Runbook: docs/runbook.md#function-failures.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failed-requests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: functionFailuresThreshold
          timeAggregation: 'Count'
        }
      ]
    }
    autoMitigate: true
    actions: metricAlertActions
  }
}

// Log alerts over the app's custom metrics. Each query returns rows (timestamp, value[, dim]).
var logAlerts = [
  {
    name: 'relay-lag'
    severity: 1
    description: 'Events are waiting too long between commit and publish: the relay is slow or stalled. Runbook: docs/runbook.md#relay-lag-above-threshold.'
    // Two signals: the age of each event the relay published (histogram), and the age of the
    // oldest event committed and not yet published, sampled every minute by the metrics timer
    // (gauge), which keeps growing when the relay publishes nothing at all.
    query: 'customMetrics | where name in (\'stockstream.outbox.lag_seconds\', \'stockstream.outbox.oldest_age_seconds\') | project timestamp, value = iff(name == \'stockstream.outbox.lag_seconds\', valueMax, valueSum / valueCount)'
    threshold: relayLagThresholdSeconds
    dimensions: []
  }
  {
    name: 'projection-lag'
    severity: 2
    description: 'A projection applies events too long after they were committed. Runbook: docs/runbook.md#projection-lag-above-threshold.'
    query: 'customMetrics | where name == \'stockstream.projection.lag_seconds\' | extend projection = tostring(customDimensions.projection) | project timestamp, projection, value = valueMax'
    threshold: projectionLagThresholdSeconds
    dimensions: [
      {
        name: 'projection'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    name: 'reconciliation-drift'
    severity: 3
    description: 'A physical count differed from the recorded on hand by more than the threshold. Runbook: docs/runbook.md#reconciliation-drift-above-threshold.'
    query: 'customMetrics | where name == \'stockstream.reconciliation.drift_units\' | project timestamp, value = valueMax'
    threshold: driftThresholdUnits
    dimensions: []
  }
  {
    name: 'subscription-dead-letters'
    severity: 2
    description: 'A subscription\'s dead-letter queue is not empty (per subscription, from the status timer). Runbook: docs/runbook.md#dead-letters-present.'
    query: 'customMetrics | where name == \'stockstream.deadletter.depth\' | extend subscription = tostring(customDimensions.subscription) | project timestamp, subscription, value = valueSum / valueCount'
    threshold: 0
    dimensions: [
      {
        name: 'subscription'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
]

resource scheduledQueries 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in logAlerts: {
  name: '${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}-${rule.name}'
    description: rule.description
    severity: rule.severity
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'value'
          dimensions: rule.dimensions
          operator: 'GreaterThan'
          threshold: rule.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroupIds
    }
  }
}]

output actionGroupIds array = actionGroupIds
