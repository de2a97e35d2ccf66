"""Console views of the integrations app, one module per area (connections, sync, dead letters, webhooks)."""
