"""Management API of a tenant's single sign-on setup: identity providers, domains, role mappings, settings."""
