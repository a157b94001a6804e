"""Ingestion: batch connectors, the Segment-compatible HTTP API, identity resolution."""
