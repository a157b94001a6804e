"""The audit trail: one hash-chained, append-only record per read of personal data."""
