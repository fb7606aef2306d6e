"""A one-route Falcon app for comparing gunicorn worker classes.

``GET /hello`` answers ``{"message": "hello"}`` encoded by msgspec, the way
Peregrine's resources set ``resp.data``: the server layer is what differs.
"""

import falcon
import msgspec

_encode = msgspec.json.Encoder().encode


class Hello:
    def on_get(self, req, resp):
        resp.data = _encode({"message": "hello"})
        resp.content_type = falcon.MEDIA_JSON


app = falcon.App()
app.add_route("/hello", Hello())
