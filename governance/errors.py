"""Domain errors of governance, with stable codes."""
from __future__ import annotations

import enum

from config.problems import Conflict


class GovernanceErrorCode(enum.StrEnum):
    POLICY_NOT_MET = "policy_not_met"


class PolicyNotMet(Conflict):
    code = GovernanceErrorCode.POLICY_NOT_MET
    title = "The publish policy is not met"


class ReviewConflict(Conflict):
    code = "review_conflict"
    title = "The review item is not in a state that allows this"
