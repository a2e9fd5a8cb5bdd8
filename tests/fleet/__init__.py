"""The fleet's two-process tests: real redis-server, real uvicorn, real worker processes."""
