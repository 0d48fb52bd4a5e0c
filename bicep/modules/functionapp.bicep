// The function app on Flex Consumption (Python 3.11), running as a user-assigned identity.
//
// App settings: exactly the settings application/settings.py declares for Azure (scope
// 'azure' or 'both') plus the Functions host's own identity-based connection settings.
// tests/infra checks both directions. No keys and no connection strings except Application
// Insights' (an ingestion endpoint; ingestion itself requires the identity's Entra token).

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Host storage account name.')
param storageAccountName string

@description('Blob endpoint of the host storage account.')
param storageBlobEndpoint string

@description('Container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component name.')
param appInsightsName string

@description('Cosmos DB account endpoint (https://<account>.documents.azure.com:443/).')
param cosmosEndpoint string

@description('Cosmos DB database name.')
param cosmosDatabaseName string

@description('Service Bus namespace host (<namespace>.servicebus.windows.net).')
param serviceBusNamespace string

@description('Last day (ISO-8601) the relay also publishes deprecated event versions.')
param deprecatedVersionsUntil string

@description('Drift in units above which a count is held for approval (empty: none).')
param driftHoldUnits string

@description('Drift in percent above which a count is held for approval (empty: none).')
param driftHoldPercent string

@description('Days between counts per velocity class, e.g. A=1,B=7,C=30.')
param countCadence string

@description('How long ids are recognised per SKU-location (e.g. 7d).')
param idempotencyWindow string

@description('Delta in units above which an adjustment is held for approval (empty: none).')
param adjustmentHoldUnits string

@description('Delta in percent of on hand above which an adjustment is held (empty: none).')
param adjustmentHoldPercent string

@description('How far back a count may be taken (e.g. 7d, 36h); older counts get 422.')
param countMaxAge string

@description('How often the order sweep runs (e.g. 60, 2m).')
param orderSweepInterval string

@description('Upper bound of instances Flex may scale out to (40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd deploys the 'api' service of azure.yaml to the resource carrying this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource basicPublishingFtp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource basicPublishingScm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Read by the code (application/settings.py SETTINGS, scope azure/both).
    STOCKSTREAM_EVENT_STORE: 'cosmos'
    COSMOS__accountEndpoint: cosmosEndpoint
    COSMOS_DATABASE: cosmosDatabaseName
    SERVICEBUS__fullyQualifiedNamespace: serviceBusNamespace
    AZURE_CLIENT_ID: identityClientId
    STOCKSTREAM_DEPRECATED_VERSIONS_UNTIL: deprecatedVersionsUntil
    STOCKSTREAM_DRIFT_HOLD_UNITS: driftHoldUnits
    STOCKSTREAM_DRIFT_HOLD_PERCENT: driftHoldPercent
    STOCKSTREAM_COUNT_CADENCE: countCadence
    STOCKSTREAM_IDEMPOTENCY_WINDOW: idempotencyWindow
    STOCKSTREAM_ADJUSTMENT_HOLD_UNITS: adjustmentHoldUnits
    STOCKSTREAM_ADJUSTMENT_HOLD_PERCENT: adjustmentHoldPercent
    STOCKSTREAM_COUNT_MAX_AGE: countMaxAge
    STOCKSTREAM_ORDER_SWEEP_INTERVAL: orderSweepInterval
    // One transactional batch per hot SKU-location's queued commands (docs/performance.md).
    STOCKSTREAM_COSMOS_COALESCE: 'on'
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    // The host's identity-based connections (Cosmos DB trigger 'COSMOS', Service Bus trigger
    // 'SERVICEBUS', host storage) authenticate as the user-assigned identity.
    COSMOS__credential: 'managedidentity'
    COSMOS__clientId: identityClientId
    SERVICEBUS__credential: 'managedidentity'
    SERVICEBUS__clientId: identityClientId
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // The host's own telemetry, with Entra ingestion (App Insights local auth is off).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output id string = site.id
