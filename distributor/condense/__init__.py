"""Condensing the feed union into one list per appliance (docs/adr/0002-condense.md)."""
