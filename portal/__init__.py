"""The agency self-service portal (server-rendered pages) and the JSON API under /api/v1."""
