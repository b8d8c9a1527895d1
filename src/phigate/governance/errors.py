"""Errors of the control plane.

Each is a :class:`phigate.errors.PhigateError`, so the CLI and the web app turn any of them
into a one-line message and a non-zero exit (or a problem+json answer). Messages name users,
roles, profiles, sites and jobs by their administrative names or ids, never by anything read
from a DICOM file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phigate.errors import PhigateError, ProfileError

if TYPE_CHECKING:
    from phigate.governance.authz import Decision


class GovernanceError(PhigateError):
    """Base of every error raised by :mod:`phigate.governance`."""


class DatabaseNotReady(GovernanceError):
    """The database is missing, unreachable or behind the code's schema."""


class InvalidInput(GovernanceError):
    """A name, role, template or option given by the operator cannot be accepted."""


class NotFound(GovernanceError):
    """A user, token, job, profile version or site does not exist."""


class AlreadyExists(GovernanceError):
    """A user, profile version or site with that name already exists."""


class AuthenticationFailed(GovernanceError):
    """The token or password does not identify an active user."""


class PermissionDenied(GovernanceError):
    """The authorisation function refused the operation; ``decision`` says why."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"permission denied: {decision.reason}")
        self.decision = decision


class ProfileChangeRefused(GovernanceError, ProfileError):
    """A profile change breaks change control (self-approval, unapproved activation...)."""


class ProfileNotUsable(GovernanceError, ProfileError):
    """A job asked for a profile version that is not approved, not active or disabled."""


class SiteTemplateInvalid(GovernanceError):
    """A site template does not match the schema, or two sites claim the same input."""


class CheckpointInvalid(GovernanceError):
    """An exported audit file does not match its signed checkpoint."""


class AuditChainBroken(GovernanceError):
    """The audit chain failed verification, so it cannot be exported or extended safely."""
