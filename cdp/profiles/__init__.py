"""The profile store: subjects' orders, line items, behaviour events and merges."""
