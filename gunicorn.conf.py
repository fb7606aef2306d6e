# The gunicorn settings live in the package (app/gunicorn_conf.py) so an
# installed wheel serves from any directory. This file keeps
# `gunicorn --config gunicorn.conf.py` and a bare `gunicorn app.wsgi:application`
# run from a checkout on the very same settings.
from app.gunicorn_conf import *  # noqa: F401,F403
