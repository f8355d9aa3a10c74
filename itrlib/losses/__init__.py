"""Training objectives shared by the papers."""
