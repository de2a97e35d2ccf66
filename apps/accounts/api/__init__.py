"""The management API of accounts (a tenant's SSO setup, SCIM tokens) and the SCIM 2.0 service provider."""
