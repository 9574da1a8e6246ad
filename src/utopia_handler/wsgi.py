"""The WSGI app for any WSGI server: `gunicorn 'utopia_handler.wsgi:create_wsgi_app()'`.

`utopia-handler web` is the supported way to run it (it ships the gunicorn configuration and
migrates once before forking); this factory is what each gunicorn worker process calls. Run
directly under another server, apply migrations first with `utopia-handler db upgrade`: until
then /readyz answers 503. Nothing is built at import time.
"""

from __future__ import annotations

from flask import Flask

from utopia_handler.app import create_app
from utopia_handler.files import keep_files_private
from utopia_handler.logs import setup_logging
from utopia_handler.runtime import build_runtime
from utopia_handler.settings import Settings, load_settings


def create_wsgi_app(settings: Settings | None = None) -> Flask:
    """Build the runtime (database engine, clients) and the Flask app, in this process."""
    if settings is None:
        # Started by a WSGI server directly rather than by `utopia-handler web`: the database
        # and logs it creates are private to its user all the same.
        keep_files_private()
        settings = load_settings()
        # Several processes share no rotating file safely; stdout goes to the journal.
        setup_logging(None, settings.log_level)
    return create_app(build_runtime(settings))
