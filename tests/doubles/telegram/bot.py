"""The bot's own settings and lookups: getMe, logOut/close, answerCallbackQuery, the command
menu and descriptions per scope and language, getChat and getChatMember.

getMe's flags are settable (`can_join_groups`, `can_read_all_group_messages`,
`supports_inline_queries`), as BotFather's /setjoingroups, /setprivacy and /setinline set
them; a revoked token is `revoke_token()` (401 on every call).
"""

from __future__ import annotations

from tests.doubles.telegram.edits import Edits
from tests.doubles.telegram.formatting import BOT_COMMAND_RE
from tests.doubles.telegram.params import opt_str, req_int, scope_key
from tests.doubles.telegram.records import JSON, QUERY_TOO_OLD, bad_request


class BotSettings(Edits):
    """Methods about the bot itself, its menu and the chats it is in."""

    # Each `_api_<name>` serves the Bot API method <name> (case-insensitive, like Telegram).

    async def _api_getMe(self, params: JSON) -> JSON:
        read_all = self.can_read_all_group_messages
        return {
            **self.bot_user,
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": not self.privacy_mode if read_all is None else read_all,
            "supports_inline_queries": self.supports_inline_queries,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _api_logOut(self, params: JSON) -> bool:
        return True

    async def _api_close(self, params: JSON) -> bool:
        return True

    async def _api_answerCallbackQuery(self, params: JSON) -> bool:
        query_id = opt_str(params, "callback_query_id")
        if query_id not in self._open_queries:
            raise bad_request(QUERY_TOO_OLD.removeprefix("Bad Request: "))
        self._open_queries.discard(query_id)
        self.callback_answers.append(dict(params))
        return True

    async def _api_setMyCommands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("commands is empty")
        for command in commands:
            if not BOT_COMMAND_RE.match(str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be non-empty")
        key = (scope_key(params.get("scope")), opt_str(params, "language_code") or "")
        self.commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _api_deleteMyCommands(self, params: JSON) -> bool:
        key = (scope_key(params.get("scope")), opt_str(params, "language_code") or "")
        self.commands.pop(key, None)
        return True

    async def _api_getMyCommands(self, params: JSON) -> list[JSON]:
        key = (scope_key(params.get("scope")), opt_str(params, "language_code") or "")
        return self.commands.get(key, [])

    async def _api_setMyDescription(self, params: JSON) -> bool:
        self._set_text(self.descriptions, params, "description", 512)
        return True

    async def _api_setMyShortDescription(self, params: JSON) -> bool:
        self._set_text(self.short_descriptions, params, "short_description", 120)
        return True

    async def _api_getMyDescription(self, params: JSON) -> JSON:
        language = opt_str(params, "language_code") or ""
        return {"description": self.descriptions.get(language, "")}

    async def _api_getMyShortDescription(self, params: JSON) -> JSON:
        language = opt_str(params, "language_code") or ""
        return {"short_description": self.short_descriptions.get(language, "")}

    @staticmethod
    def _set_text(store: dict[str, str], params: JSON, key: str, limit: int) -> None:
        language = opt_str(params, "language_code") or ""
        value = opt_str(params, key) or ""
        if len(value) > limit:
            raise bad_request(f"{key} is too long")
        if value:
            store[language] = value
        else:
            store.pop(language, None)

    async def _api_getChat(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        return {
            **chat.info,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _api_getChatMember(self, params: JSON) -> JSON:
        chat = self._bot_chat(params)
        user_id = req_int(params, "user_id")
        user = self.bot_user if user_id == self.bot_id else self.users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        if user_id == self.bot_id:
            status = "administrator" if chat.bot_is_admin else "member"
        else:
            status = chat.members.get(user_id, "member")
        if status == "administrator":
            rights = [
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
                "can_pin_messages",
                "can_manage_topics",
            ]
            return {
                "status": status,
                "user": user,
                "can_be_edited": False,
                "is_anonymous": False,
                "can_promote_members": False,
                **dict.fromkeys(rights, True),
            }
        if status == "creator":
            return {"status": status, "user": user, "is_anonymous": False}
        return {"status": status, "user": user}
