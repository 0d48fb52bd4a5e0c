// The user-assigned managed identity the function app runs as.
// User-assigned (not system-assigned) so every role assignment can be made before the app
// exists: the app's first start already has its data-plane rights, and AZURE_CLIENT_ID is a
// stable value the code and the identity-based connections can name.

@description('Name of the managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
