"""`python -m utopia_handler.settings [README.md]`: print the README's settings table, or rewrite it."""

from __future__ import annotations

import sys

from utopia_handler.settings.table import main

sys.exit(main(sys.argv[1:]))
