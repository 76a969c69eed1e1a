"""Optional features an operator (or the account) may not have: HD (aitryon-refiner)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Account-wide problems (key, billing) are not the refiner's: they do not hide HD.
ACCOUNT_CODES = frozenset(
    {"InvalidApiKey", "Arrearage", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)


@dataclass
class Features:
    hd: bool = True  # TRYON_HD; turned off for the run when the refiner is refused

    def refiner_refused(self, code: str | None) -> bool:
        """The refiner refused the account: unless that is the whole account's problem
        (key, billing), it is "model not found/access denied": hide HD for this run.
        Returns whether it was the refiner's."""
        if code in ACCOUNT_CODES:
            return False
        if not self.hd:
            return True
        self.hd = False
        log.error(
            "aitryon-refiner is not available to this account (%s): the HD button is hidden "
            "until the bot restarts (set TRYON_HD=off to hide it for good)",
            code,
        )
        return True
