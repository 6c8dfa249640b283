"""The HTTP entry point: FastAPI app factory, the proxy endpoints and their responses."""
