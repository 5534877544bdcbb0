"""bootstrap package."""
