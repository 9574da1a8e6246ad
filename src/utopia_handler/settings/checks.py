"""Cross-checks of settings that are each valid alone: conflicts, and what serving needs.

`check_conflicts` always runs; `check_runtime` runs unless loading is lenient (check-config
--lenient, the console's tests): it refuses to serve or work with anything missing that a real
order would need.
"""

from __future__ import annotations

from utopia_handler.settings.converters import RANDOM_HINT, fail
from utopia_handler.settings.schema import Settings


def check_conflicts(s: Settings) -> None:
    """Refuse settings that contradict each other, naming the one to change."""
    worker = s.worker
    if worker.retry_max_seconds < worker.retry_base_seconds:
        fail(
            "RETRY_MAX_SECONDS",
            f"{worker.retry_max_seconds:g} is less than RETRY_BASE_SECONDS "
            f"({worker.retry_base_seconds:g})",
            "make it at least RETRY_BASE_SECONDS",
        )
    reconcile = s.reconcile
    if reconcile.alert_seconds <= reconcile.interval_seconds:
        # Every run would find the last good one "too old": an alert after each good run.
        fail(
            "RECONCILE_ALERT_HOURS",
            f"{reconcile.alert_seconds / 3600:g} h is not longer than RECONCILE_INTERVAL_SECONDS "
            f"({reconcile.interval_seconds} s)",
            "make it longer than a few intervals",
        )
    if s.powercode.ca_bundle is not None and not s.powercode.verify_ssl:
        fail(
            "PC_VERIFY_SSL",
            "is false while PC_CA_BUNDLE is set",
            "remove PC_VERIFY_SSL=false; the CA bundle already trusts PowerCode's certificate",
        )
    console = s.console
    has_password = console.admin_pass_hash is not None or console.admin_pass is not None
    if console.admin_user is not None and not has_password:
        fail(
            "ADMIN_USER",
            "is set without ADMIN_PASS_HASH or ADMIN_PASS",
            "set one of them, or remove ADMIN_USER and use `utopia-handler users add`",
        )
    if console.admin_user is None and has_password:
        fail(
            "ADMIN_USER",
            "is not set but ADMIN_PASS_HASH or ADMIN_PASS is",
            "set ADMIN_USER to the first admin's login name",
        )
    name = console.admin_user
    if name is not None and (len(name) > 64 or any(char.isspace() for char in name)):
        fail("ADMIN_USER", "is not a login name", "use up to 64 characters without spaces")


def check_runtime(s: Settings) -> None:
    """Refuse to serve or work with anything missing that a real order would need."""
    for name, problem, fix in _runtime_gaps(s):
        fail(name, problem, fix)


def runtime_problems(s: Settings) -> list[str]:
    """Every refusal `check_runtime` would make, one line each, instead of only the first."""
    return [f"{name}: {problem}; {fix}" for name, problem, fix in _runtime_gaps(s)]


def _runtime_gaps(s: Settings) -> list[tuple[str, str, str]]:
    """(setting, problem, fix) for each thing missing that a real order would need, in order."""
    gaps: list[tuple[str, str, str]] = []
    required = (
        ("PC_API_KEY", s.powercode.api_key is None, "set it to the PowerCode API key"),
        (
            "PC_URL",
            not s.powercode.api_url,
            "set it to the PowerCode web address, e.g. https://pc.example.net:444",
        ),
        ("UTOPIA_API_KEY", s.utopia.api_key is None, "set it to the API key UTOPIA issued"),
        ("MAIL_SERVER", not s.mail.server, "set it to the SMTP relay host name"),
        ("EMAIL_SENDER", not s.mail.sender, "set it to the From address, e.g. noreply@isp.net"),
        (
            "EMAIL_RECIPIENTS",
            not s.mail.recipients,
            "set it to the staff addresses, separated by commas",
        ),
        (
            "SECRET_KEY",
            s.web.secret_key is None,
            f"set it to 16+ random characters, e.g. from {RANDOM_HINT}",
        ),
    )
    gaps += [(name, "is not set", fix) for name, missing, fix in required if missing]
    if s.web.secret_key is not None and len(s.web.secret_key.reveal()) < 16:
        gaps.append(
            (
                "SECRET_KEY",
                "is shorter than 16 characters",
                f"use 16+ random characters, e.g. from {RANDOM_HINT}",
            )
        )
    # Signed callbacks authenticate on their own, so the token is not needed with them.
    if (
        s.web.callback_token is None
        and not s.web.guard.signing_secrets
        and not s.web.allow_unauthenticated_callbacks
    ):
        gaps.append(
            (
                "UTOPIA_CALLBACK_TOKEN",
                "is not set",
                "set it (16+ random characters) and register the callback URL with ?token=..., "
                "or set CALLBACK_SIGNING_SECRETS for a sender that signs, "
                "or set ALLOW_UNAUTHENTICATED_CALLBACKS=true to accept unauthenticated callbacks",
            )
        )
    if not s.provisioning.plans:
        gaps.append(
            (
                "[plans]",
                "no UTOPIA plan is mapped to a PowerCode service",
                "add a [plans] table to the config file or set SERVICE_PLAN_250MBPS_ID",
            )
        )
    portal = s.provisioning.portal
    if portal.password == "shared" and portal.shared_password is None:  # noqa: S105
        gaps.append(
            (
                "CUSTOMER_PORTAL_PASSWORD",
                'is not set but [portal] password = "shared" needs it',
                'set it, or use password = "random"',
            )
        )
    if s.mail.username and s.mail.password is None:
        gaps.append(("MAIL_PASSWORD", "is not set but MAIL_USERNAME is", "set both or neither"))
    if s.mail.password is not None and not s.mail.username:
        gaps.append(("MAIL_USERNAME", "is not set but MAIL_PASSWORD is", "set both or neither"))
    return gaps
