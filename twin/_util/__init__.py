"""Small utilities shared by every layer (no imports from the rest of twin)."""
