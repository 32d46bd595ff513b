"""Domain errors of governance, with stable codes."""
from __future__ import annotations

import enum

from config.problems import Conflict, DomainError


class GovernanceErrorCode(enum.StrEnum):
    POLICY_NOT_MET = "policy_not_met"


class PolicyNotMet(Conflict):
    code = GovernanceErrorCode.POLICY_NOT_MET
    title = "The publish policy is not met"


class ReviewConflict(Conflict):
    code = "review_conflict"
    title = "The review item is not in a state that allows this"


class RightsError(DomainError):
    """Bad rights input (an unknown channel, contradictory dates, revoking twice)."""

    code = "rights_invalid"
    title = "The rights record is not valid"


class BrandMarkInvalid(DomainError):
    code = "brand_mark_invalid"
    title = "The brand mark cannot be used"
