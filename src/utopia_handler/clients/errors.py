"""The errors every outside-service client raises: nothing else leaves a client.

Two kinds matter to the worker:
- RetryableError: a fault outside (network, timeout, 5xx, 429). Trying again later may work.
- RejectedError: the service answered and said no. Trying again unchanged will not help.

Messages are written for operators and must never carry secrets or customer personal data.
"""

from __future__ import annotations


class OutsideError(Exception):
    """Base of all client errors; `service` names the outside system ("utopia", "powercode", "smtp")."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message


class RetryableError(OutsideError):
    """A transient fault. `may_have_applied` is True when the request went out and its reply was lost."""

    def __init__(
        self,
        service: str,
        message: str,
        *,
        retry_after: float | None = None,
        may_have_applied: bool = False,
    ) -> None:
        super().__init__(service, message)
        self.retry_after = retry_after
        self.may_have_applied = may_have_applied


class RejectedError(OutsideError):
    """The service refused the request; `code` is its own status code when it gave one."""

    def __init__(self, service: str, message: str, *, code: str | int | None = None) -> None:
        super().__init__(service, message)
        self.code = code
