"""leafattack."""
