"""The ASGI apps bench/run.py serves, one uvicorn process each, all doing the same `add`."""
