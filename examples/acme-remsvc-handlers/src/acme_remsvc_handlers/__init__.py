"""ACME's result handlers for remsvc."""

__version__ = "0.1.0"
