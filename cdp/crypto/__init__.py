"""Key vault: key providers, per-subject data keys, field encryption and pseudonymous tokens."""
