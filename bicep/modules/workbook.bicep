// The pipeline health workbook. Its JSON lives in bicep/workbook.json (edit it in the portal's
// Advanced Editor, paste it back); the resource ids it charts are substituted here.

@description('Display name of the workbook.')
param displayName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Application Insights resource id (the workbook\'s home and its KQL scope).')
param appInsightsId string

@description('Service Bus namespace resource id.')
param serviceBusId string

@description('Cosmos DB account resource id.')
param cosmosAccountId string

var template = loadTextContent('../workbook.json')
var serialized = replace(replace(replace(template, '__APPINSIGHTS_ID__', appInsightsId), '__SERVICEBUS_ID__', serviceBusId), '__COSMOS_ID__', cosmosAccountId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; stable per resource group so redeploys update it.
  name: guid(resourceGroup().id, 'stockstream-pipeline-health')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    serializedData: serialized
    category: 'workbook'
    sourceId: appInsightsId
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
