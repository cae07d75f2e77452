"""The todo demo that `tether demo` and `make demo` serve: tether on FastAPI with SQLite.

The app lives in `tether.demo.app` (`uvicorn tether.demo.app:app`); it is not imported
here, because importing it opens the demo's database file.
"""

__all__ = ()
