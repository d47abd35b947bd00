"""Shared by every layer: pytester for the plugin and robustness tests. The helpers are the
package tests.support, importable because pyproject.toml sets pytest's `pythonpath = ["."]`."""

pytest_plugins = ["pytester"]
