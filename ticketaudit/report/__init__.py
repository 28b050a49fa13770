"""Rendering: JSON (validated against the published schema) and self-contained HTML. No torch here."""
