"""The code shown in docs/: each file is included verbatim in a page and tested."""
