"""Reports read from the store; nothing here trains or scores."""
