"""The errors the engine raises.

Every public error derives from :class:`GovmailError`, carries a stable ``code`` and a message that
is safe to show to the person who caused it: it names the field and value at fault and what to do,
and never contains a secret. The CLI maps them to exit codes; the portal to HTTP statuses.
"""

from __future__ import annotations


class GovmailError(Exception):
    """Root of every error govmail raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInput(GovmailError):
    """A value given by a person is not acceptable.

    ``field`` is the name of the input (``full_name``, ``agency``, ...), ``value`` what was given
    (never a secret) and ``hint`` what to do instead.
    """

    code = "invalid_input"

    def __init__(self, field: str, value: object, problem: str, hint: str = "") -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.hint = hint
        shown = "" if value is None else f" {str(value)!r}"
        text = f"{field}{shown}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class NotFound(GovmailError):
    """The named object does not exist."""

    code = "not_found"

    def __init__(self, kind: str, key: str, hint: str = "") -> None:
        self.kind = kind
        self.key = key
        text = f"no {kind} {key!r}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)


class Conflict(GovmailError):
    """The change would clash with existing state (a taken address, a wrong lifecycle step)."""

    code = "conflict"


class ConfigError(GovmailError):
    """The configuration is missing, unreadable or invalid."""

    code = "config_error"


class DirectoryUnavailable(GovmailError):
    """The LDAP directory could not be reached; queued changes stay in the outbox."""

    code = "directory_unavailable"
