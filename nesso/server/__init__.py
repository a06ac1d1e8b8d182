"""`nesso serve`: an OpenAI-compatible server (see docs/server.md)."""
