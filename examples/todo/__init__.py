"""The todo demo that `make demo` serves: tether on FastAPI with SQLite."""
