"""Faults the Bot API double can play: flood control, 5xx, lost answers, a revoked token.

* 429 ``Too Many Requests: retry after N`` with ``parameters.retry_after``, scripted or from
  the 20 messages/minute group limit (telegram-ptb.md A5 "Flood limits");
* transient 5xx answers and dropped connections, before or after the call takes effect;
* ambiguous sends: the message is posted, but the answer is lost or comes too late;
* a revoked token (every method answers 401 Unauthorized; PTB raises InvalidToken).

Blocked users, kicked bots and migrated groups are part of the simulated world (updates.py);
an unreachable server is `LocalServer.go_offline`.
"""

from __future__ import annotations

import math
import re
from urllib.parse import unquote

from tests.doubles.telegram.core import TelegramCore
from tests.doubles.telegram.records import (
    EDIT_METHODS,
    JSON,
    SEND_METHODS,
    ApiError,
    FaultRule,
    FloodRule,
    chat_id_param,
    too_many,
)


class Faults(TelegramCore):
    """Fault scripting (see the module docstring)."""

    def flood(
        self,
        method: str | None = None,
        chat_id: int | None = None,
        retry_after: int = 1,
        count: int = 1,
    ) -> None:
        """The next `count` matching calls answer 429 "Too Many Requests: retry after N".

        `method=None` matches every call that targets a chat (has a chat_id).
        """
        self._flood_rules.append(FloodRule(method, chat_id, retry_after, count))

    def enforce_group_limit(self, per_minute: int = 20, window: float = 60.0) -> None:
        """429 for sends/edits beyond `per_minute` per group chat in a sliding `window`."""
        self._group_limit = (per_minute, window)

    def fail_next(
        self, method: str, status: int = 500, description: str | None = None, count: int = 1
    ) -> None:
        """The next `count` calls of `method` fail with HTTP `status` (not processed)."""
        if description is None:
            description = "Bad Gateway" if status == 502 else "Internal Server Error"
        self._fault_rules.append(FaultRule(method, count, status, description))

    def drop_next(self, method: str, count: int = 1, *, after_processing: bool = False) -> None:
        """The next `count` calls of `method` get their connection closed without an answer.

        With `after_processing` the call takes effect first (a lost response).
        """
        self._fault_rules.append(
            FaultRule(method, count, drop=True, after_processing=after_processing)
        )

    def _take_flood(self, method: str, params: JSON) -> ApiError | None:
        chat_id = chat_id_param(params)
        for rule in self._flood_rules:
            if rule.remaining <= 0:
                continue
            if rule.method is None and chat_id is None:
                continue
            if rule.method is not None and rule.method.lower() != method:
                continue
            if rule.chat_id is not None and rule.chat_id != chat_id:
                continue
            rule.remaining -= 1
            return too_many(rule.retry_after)
        limited = method in SEND_METHODS or method in EDIT_METHODS
        if self._group_limit and limited and chat_id is not None and chat_id < 0:
            per_minute, window = self._group_limit
            now = self.clock()
            recent = [t for t in self._group_sends.get(chat_id, []) if now - t < window]
            self._group_sends[chat_id] = recent
            if len(recent) >= per_minute:
                return too_many(max(1, math.ceil(window - (now - recent[0]))))
        return None

    def _take_fault(self, method: str) -> FaultRule | None:
        for rule in self._fault_rules:
            if rule.remaining > 0 and rule.method.lower() == method:
                rule.remaining -= 1
                return rule
        return None

    def delay_next(self, method: str, seconds: float, count: int = 1) -> None:
        """The next `count` calls of `method` take effect, then their answer is held `seconds`
        (past the client's read timeout: the bot sees a timeout, the message exists)."""
        self._fault_rules.append(FaultRule(method, count, delay=seconds))

    def ambiguous_next(
        self, method: str = "sendPhoto", *, delay: float | None = None, count: int = 1
    ) -> None:
        """An ambiguous send: the call takes effect (the message is posted and recorded in
        `sent`) but the bot never gets the answer: the connection is dropped, or with `delay`
        the answer is held that long (beyond the client timeout)."""
        if delay is None:
            self.drop_next(method, count, after_processing=True)
        else:
            self.delay_next(method, delay, count)

    def revoke_token(self, revoked: bool = True) -> None:
        """The token is rejected (revoked in BotFather): every call, getMe included, answers
        401 Unauthorized, as Telegram does."""
        self.token_revoked = revoked

    def _check_token(self, token: str) -> ApiError | None:
        """401 for a well-formed but wrong (or revoked) token, 404 for garbage (as Telegram)."""
        token = unquote(token)
        if token == self.token and not self.token_revoked:
            return None
        if re.fullmatch(r"\d+:[\w-]+", token):
            return ApiError(401, "Unauthorized")
        return ApiError(404, "Not Found")
