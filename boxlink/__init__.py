"""boxlink package."""
