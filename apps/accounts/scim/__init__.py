"""SCIM 2.0 provisioning (RFC 7643/7644) at /scim/v2/: a tenant's IdP (Okta, Entra ID, ...) creates, updates
and deactivates its users and groups here, with a bearer token of that tenant (`ScimToken`).

`protocol` is the wire format (errors, resources, filters, PATCH operations, as Okta and Entra send them);
`apps.accounts.api.scim` the DRF views; writes are in `apps.accounts.services.scim`, reads in `selectors`.
"""
