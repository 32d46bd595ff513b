"""Who may fetch a file's bytes, and the audit trail of restricted files.

Any viewer may download an ordinary representation. A restricted one (unreleased, under embargo, carrying
rights terms) needs the audit permission, and each download of it is written to the audit log.
"""
from __future__ import annotations

from typing import Any

from django.db import transaction

from catalog.errors import PermissionDenied
from catalog.models import Representation
from catalog.permissions import Action
from catalog.services import require
from governance.audit import record_event
from governance.rights import check_channel


@transaction.atomic
def authorize_download(*, actor: Any, representation: Representation, channel: str | None = None) -> Representation:
    """Raise PermissionDenied unless the actor may fetch the file (and, given a channel, its rights allow that
    channel now); record `file.downloaded` for restricted files."""
    require(actor, Action.VIEW, representation)
    if channel:
        refusal = check_channel(representation.lod.variant.version, channel)
        if refusal:
            raise PermissionDenied(f"Download for the '{channel}' channel refused: {refusal}.")
    if representation.restricted:
        require(actor, Action.AUDIT, representation)
        record_event(
            actor=actor, action="file.downloaded", obj=representation,
            asset_id=representation.lod.variant.version.asset_id,
            data={"sha256": representation.file.sha256, "filename": representation.filename, "size": representation.file.size},
        )
    return representation
