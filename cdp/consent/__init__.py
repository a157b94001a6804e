"""Consent: the append-only ledger of grants and withdrawals per subject and purpose."""
