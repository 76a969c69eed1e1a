"""Every language end to end: chosen from Telegram's language_code, or with /language."""

from __future__ import annotations

from pathlib import Path

import pytest
from telegram.ext import Application

from handlers.language import GROUP_COMMANDS, PRIVATE_COMMANDS, menu_code
from handlers.texts import LANGUAGE_INFO, LANGUAGE_LIST, LANGUAGES, Texts
from tests.actors import Actor
from tests.doubles.dashscope import FakeDashScope
from tests.doubles.telegram import FakeTelegram, SentMessage
from tests.harness import jpeg, make_settings, running_bot, services_of

TEXTS = Texts.load()
# What Telegram apps send as language_code for each of the bot's languages.
TELEGRAM_CODES = {
    "en": "en",
    "zh-hans": "zh-hans",
    "zh-hant": "zh-TW",
    "ru": "ru",
    "uk": "uk",
    "es": "es",
    "pt-br": "pt-br",
    "id": "id",
    "tr": "tr",
    "fa": "fa",
    "ar": "ar",
    "uz": "uz",
    "hi": "hi",
}


def labels(message: SentMessage) -> list[str]:
    return [label for label, _ in message.buttons]


async def full_try_on(tg: FakeTelegram, user: Actor, lang: str) -> None:
    """/tryon, person, top, /skip: every prompt, button, status and the result in `lang`."""

    def text(key: str) -> str:
        return TEXTS.get(lang, key)

    prompt = await user.command("tryon")
    assert text("ask_person") in prompt.body
    assert labels(prompt) == [text("btn_cancel")]
    prompt = await user.photo(jpeg(seed=1))
    assert prompt.body == text("ask_top")
    assert labels(prompt) == [text("btn_keep_top"), text("btn_skip_top"), text("btn_cancel")]
    prompt = await user.photo(jpeg(seed=2))
    assert prompt.body == text("ask_bottom")
    since = len(tg.sent)
    await user.command("skip")
    status = await user.next_from_bot(since)
    elapsed = TEXTS.get(lang, "elapsed", time=TEXTS.duration(lang, 0))
    assert status.body == f"{text('stage_preparing')}\n{elapsed}"
    result = await user.result(since)
    assert result.caption == text("result_caption")
    assert labels(result) == [
        text(key) for key in ("btn_full_size", "btn_take", "btn_hd", "btn_again", "btn_new")
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_a_full_try_on_in_the_language_of_the_users_app(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
    lang: str,
) -> None:
    user = Actor(tg, 5001, lang=TELEGRAM_CODES[lang])
    await full_try_on(tg, user, lang)
    assert len(ds.submits) == 1


async def test_language_override_wins_everywhere_until_forget(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5101, lang="en")
    menu = await ann.command("language")
    assert menu.body == TEXTS.get("en", "language_prompt")
    names = [language.name for language in LANGUAGE_LIST]
    assert labels(menu) == ["✓ English", *names[1:]]
    tg.press_button(ann.chat, ann.user, menu, menu.button_data("Русский"))
    await tg.wait_for(lambda: TEXTS.get("ru", "language_set") in menu.edits)
    assert await services_of(bot).prefs.languages() == {5101: "ru"}
    # Her private chat's menu follows the choice.
    scope = f"chat:{ann.chat_id}"
    await tg.wait_for(lambda: bool(tg.commands_for(scope)))
    assert [c["description"] for c in tg.commands_for(scope)] == [
        TEXTS.get("ru", f"cmd_{name}") for name in PRIVATE_COMMANDS
    ]
    await full_try_on(tg, ann, "ru")
    goodbye = await ann.command("forget")
    assert goodbye.body == TEXTS.get("ru", "forgotten")
    assert await services_of(bot).prefs.languages() == {}
    assert tg.commands_for(scope) == []
    prompt = await ann.command("tryon")
    assert TEXTS.get("en", "ask_person") in prompt.body


async def test_language_works_in_the_middle_of_a_try_on(
    tg: FakeTelegram,
    ds: FakeDashScope,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    ann = Actor(tg, 5102, lang="en")
    await ann.command("tryon")
    menu = await ann.command("language")
    tg.press_button(ann.chat, ann.user, menu, menu.button_data("العربية"))
    await tg.wait_for(lambda: TEXTS.get("ar", "language_set") in menu.edits)
    prompt = await ann.photo(jpeg(seed=3))  # the flow goes on, in the new language
    assert prompt.body == TEXTS.get("ar", "ask_top")
    reply = await ann.command("help")
    assert reply.body == TEXTS.get("ar", "help")


async def test_the_choice_survives_a_restart(
    tg: FakeTelegram, ds: FakeDashScope, tmp_path: Path
) -> None:
    settings = make_settings(tg.base_url, ds.base_url, tmp_path / "data")
    ann = Actor(tg, 5103, lang="en")
    async with running_bot(settings):
        menu = await ann.command("language")
        tg.press_button(ann.chat, ann.user, menu, menu.button_data("Türkçe"))
        await tg.wait_for(lambda: TEXTS.get("tr", "language_set") in menu.edits)
    async with running_bot(settings):
        prompt = await ann.command("tryon")
        assert TEXTS.get("tr", "ask_person") in prompt.body


async def test_command_menus_for_every_language(
    tg: FakeTelegram,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    for lang in LANGUAGES:
        code = menu_code(lang) or ""
        # Telegram keys menus by two-letter codes: zh-hant shares zh's unless chosen.
        shown = "zh-hans" if lang == "zh-hant" else lang
        for scope, names in (
            ("all_private_chats", PRIVATE_COMMANDS),
            ("all_group_chats", GROUP_COMMANDS),
        ):
            menu = tg.commands_for(scope, code)
            assert [c["command"] for c in menu] == list(names), (lang, scope)
            assert [c["description"] for c in menu] == [
                TEXTS.get(shown, f"cmd_{name}") for name in names
            ]
    assert {menu_code(lang) for lang in LANGUAGES} - {None} == {
        LANGUAGE_INFO[lang].locale.split("_")[0] for lang in LANGUAGES if lang != "en"
    }


async def test_traditional_chinese_gets_its_menu_in_its_private_chat(
    tg: FakeTelegram,
    bot: Application,  # type: ignore[type-arg]
) -> None:
    mei = Actor(tg, 5104, lang="zh-TW", name="Mei")
    await mei.command("help")
    scope = f"chat:{mei.chat_id}"
    await tg.wait_for(lambda: bool(tg.commands_for(scope)))
    assert [c["description"] for c in tg.commands_for(scope)] == [
        TEXTS.get("zh-hant", f"cmd_{name}") for name in PRIVATE_COMMANDS
    ]
