"""The HTTP edge: FastAPI routes, auth, limits, SSE, and the one error table."""
