"""The conformance app: the fixed set of operations every transport is tested against."""
