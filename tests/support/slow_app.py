"""The real application plus one test-only route that runs a slow query.

Served by gunicorn with the production gunicorn.conf.py, it shows whether a
slow query in one request stalls other requests on the same worker.
"""

from app.factory import create_app
from app.media import write_json
from app.operations import PUBLIC, operation


class SleepResource:
    def __init__(self, deps):
        self._pool = deps.pool

    @operation(access=PUBLIC, summary="sleep in Postgres")
    def on_get(self, req, resp):
        seconds = float(req.get_param("s", default="1"))
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(%s)", (seconds,))
        write_json(resp, {"slept": seconds})


application = create_app()
application.add_route("/_test/sleep", SleepResource(application.deps))
