"""Peregrine: a lean, high-throughput JSON API for users, a catalog and orders."""

__version__ = "0.1.0"
