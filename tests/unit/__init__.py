"""Tests that need no Postgres, memcached or network (see conftest.py)."""
