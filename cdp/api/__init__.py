"""The HTTP API: thin routes over service functions; domain errors mapped in one place."""
