"""Console reads: `dashboards` (charts over a time window) and `overview` (the tenant home)."""
