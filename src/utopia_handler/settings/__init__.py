"""The one place that reads configuration: environment, `.env`, and an optional TOML file.

Precedence, highest first: process environment, `.env` in the working directory, the TOML file
(`UTOPIA_HANDLER_CONFIG=path` or `--config path`). The result is one immutable `Settings`.
A wrong or missing value raises `SettingsError` with one line naming the setting and why.

The package by job: `schema` (the frozen dataclasses), `sources` (environment, `.env`, TOML),
`converters` (text to typed values, one-line errors), `table` (every variable and TOML key, from
which reading, check-config's listing and the README table are derived), `checks` (conflicts and
what serving needs) and `loading` (all of them together).
"""

from __future__ import annotations

from utopia_handler.settings.converters import POWERCODE_PORT, SettingsError
from utopia_handler.settings.loading import load_settings
from utopia_handler.settings.schema import (
    CallbackGuard,
    ConsoleSettings,
    CustomerDefaults,
    InvoicePreference,
    IPNetwork,
    MailSecurity,
    MailSettings,
    PlanMapping,
    PortalPolicy,
    PowerCodeSettings,
    ProvisioningSettings,
    ReconcileSettings,
    Secret,
    Settings,
    TicketSettings,
    Timeouts,
    UtopiaSettings,
    WebSettings,
    WorkerSettings,
    plan_key,
)
from utopia_handler.settings.table import (
    KEYS_OF_TABLE,
    SECRET_VARIABLES,
    TOML_VARIABLES,
    describe_settings,
)

# The names the old module kept by hand, now derived from the table; tests still use them.
_SECRET_VARIABLES = SECRET_VARIABLES
_VARIABLES = TOML_VARIABLES
_TABLE_KEYS = KEYS_OF_TABLE

__all__ = [
    "POWERCODE_PORT",
    "CallbackGuard",
    "ConsoleSettings",
    "CustomerDefaults",
    "IPNetwork",
    "InvoicePreference",
    "MailSecurity",
    "MailSettings",
    "PlanMapping",
    "PortalPolicy",
    "PowerCodeSettings",
    "ProvisioningSettings",
    "ReconcileSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "TicketSettings",
    "Timeouts",
    "UtopiaSettings",
    "WebSettings",
    "WorkerSettings",
    "describe_settings",
    "load_settings",
    "plan_key",
]
