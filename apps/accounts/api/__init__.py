"""The SCIM 2.0 service provider's views (/scim/v2/); the management API of accounts may join later."""
