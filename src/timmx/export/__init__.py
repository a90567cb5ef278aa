"""Export backends and the machinery they share."""
