"""Schema documents derived from the registered operations: OpenAPI routes and extensions."""

__all__ = ()
