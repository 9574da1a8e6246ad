"""`utopia-handler import-old PATH`: bring an old handler installation's data over.

`files.py` reads the old folder tolerantly into small records (users, failed orders, ticket
templates); `importer.py` plans the import against the database (what is new, what is here
already, what cannot come over and why), applies it through accounts, lifecycle and
config_store, and words the report. The old `.env` is compared by `settings.old_env`.
"""
