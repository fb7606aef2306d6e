"""The WSGI entry point gunicorn loads in each worker: ``app.wsgi:application``."""

from app.factory import create_app

application = create_app()
