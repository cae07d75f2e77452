"""Runnable example apps: the todo demo, the conformance app, and the code shown in docs/."""
