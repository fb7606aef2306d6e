"""Helpers shared by the locust suites in ``bench/locustfiles/``.

``users`` has the base user classes, ``data`` the id pools loaded at test
start, ``checks`` the pass/fail gate. Every module imports locust first, so
importing one never pulls the standard library in before gevent patches it.
"""
