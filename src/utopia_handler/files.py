"""Files the product creates (the database, backups, logs) belong to its own user alone."""

from __future__ import annotations

import os

#: Folders 0700, files 0600, whatever umask the process was started with.
PRIVATE_UMASK = 0o077


def keep_files_private() -> None:
    """Set this process's umask so every file and folder it creates is private to its user.

    Called by the entry points (the `utopia-handler` command, the WSGI factory under a server
    started otherwise), never at import.
    """
    os.umask(PRIVATE_UMASK)
