// Cosmos DB for NoSQL: the event store (which is also the outbox), snapshots, views,
// reconciliation and the change-feed leases. Keys are disabled; the function's identity
// gets the data-plane Built-in Data Contributor role (a sqlRoleAssignment, not an Azure
// RBAC roleAssignment).

@description('Cosmos DB account name (lowercase letters, digits and hyphens).')
param accountName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Database name; the app reads it from COSMOS_DATABASE.')
param databaseName string

@description('serverless (pay per request) or autoscale (shared database throughput).')
@allowed([
  'serverless'
  'autoscale'
])
param throughputMode string

@description('Autoscale maximum RU/s shared by the containers (autoscale mode only).')
@minValue(1000)
@maxValue(1000000)
param autoscaleMaxThroughput int

@description('Principal id of the function app identity.')
param functionPrincipalId string

@description('Log Analytics workspace receiving the account diagnostics.')
param workspaceId string

// Built-in Cosmos DB Data Contributor (data plane): read, write, query, change feed.
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource account 'Microsoft.DocumentDB/databaseAccounts@2025-04-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: (throughputMode == 'serverless') ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    enableMultipleWriteLocations: false
    enableAutomaticFailover: false
    minimalTlsVersion: 'Tls12'
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous7Days'
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2025-04-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: (throughputMode == 'autoscale') ? {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    } : {}
  }
}

// One immutable document per event, partitioned by the stream id (the eventsourcing
// originator id). The serialised payload (/state) is never queried, so it is not indexed:
// that is most of a write's RU cost. Memo documents (idempotency keys, closed orders, count
// ids) share the partition and the batch; defaultTtl -1 turns on per-item TTL, so memos
// expire after the idempotency window while events (no ttl) are kept forever.
resource events 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'events'
  properties: {
    resource: {
      id: 'events'
      defaultTtl: -1
      partitionKey: {
        paths: [
          '/originator_id'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/state/?'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

resource snapshots 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'snapshots'
  properties: {
    resource: {
      id: 'snapshots'
      partitionKey: {
        paths: [
          '/originator_id'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/state/?'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

resource views 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'views'
  properties: {
    resource: {
      id: 'views'
      partitionKey: {
        paths: [
          '/pk'
        ]
        kind: 'Hash'
        version: 2
      }
      // No query reads the per-order expiry map (the sweep filters on next_expiry).
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/expiries/*'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

// Reconciliation: counts held for approval (pk 'held'), count-session summaries
// (pk 'sessions') and the movement ledger (pk = SKU, one document per SKU-location).
resource reconciliation 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'reconciliation'
  properties: {
    resource: {
      id: 'reconciliation'
      partitionKey: {
        paths: [
          '/pk'
        ]
        kind: 'Hash'
        version: 2
      }
      // The ledger's per-day map is read whole, never filtered on.
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/days/*'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

// Change-feed leases: the trigger may not create it with an Entra identity, so it is here.
resource leases 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'leases'
  properties: {
    resource: {
      id: 'leases'
      partitionKey: {
        paths: [
          '/id'
        ]
        kind: 'Hash'
        version: 2
      }
    }
  }
}

// Order and location-group streams (process streams): stored as stock events are (one
// immutable document per event, partitioned by the stream id), in a container of their
// own so that the stock relay's change feed carries stock events only. Each process's
// wake-up is a companion document (id 'wake-up') in its stream's partition, upserted in
// the batch of its events; the order sweep queries it across partitions by kind and
// wake_at, so those stay indexed and the opaque /state is not.
resource processes 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'processes'
  properties: {
    resource: {
      id: 'processes'
      partitionKey: {
        paths: [
          '/originator_id'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/state/?'
          }
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, functionPrincipalId, dataContributorRoleId)
  properties: {
    principalId: functionPrincipalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    scope: account.id
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
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
        category: 'Requests'
        enabled: true
      }
    ]
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
