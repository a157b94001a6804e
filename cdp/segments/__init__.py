"""Segments: declarative rules over traits, orders and consent, compiled to one SQL query."""
