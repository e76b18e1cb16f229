"""A package so that the package-scoped servers of conftest.py end with this folder's tests."""
