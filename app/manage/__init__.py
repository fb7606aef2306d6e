"""Managing Peregrine: the ``peregrine`` CLI and what it drives.

Schema migrations, demo data, user creation and the private development
servers live here, apart from the request path: nothing under ``app.manage``
is imported by ``app.wsgi`` or a worker.
"""
