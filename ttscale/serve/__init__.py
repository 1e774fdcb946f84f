"""`ttscale serve`: test-time search behind an OpenAI-compatible HTTP API, batched across requests."""
