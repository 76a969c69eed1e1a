"""The catalogs: complete, faithful placeholders, real plural rules, Telegram's limits, RTL."""

from __future__ import annotations

import functools
import gettext
import re
from importlib import resources
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from handlers.language import GROUP_COMMANDS, PRIVATE_COMMANDS
from handlers.texts import (
    DEFAULT_LANGUAGE,
    LANGUAGE_INFO,
    LANGUAGES,
    MESSAGES,
    RTL_LANGUAGES,
    Texts,
    isolate,
    language_for,
    placeholders,
)
from handlers.texts.catalog import FSI, LRI, PDI

TEXTS = Texts.load()
LOCALES = Path(str(resources.files("handlers.texts") / "locales"))
TRANSLATED = [lang for lang in LANGUAGES if lang != DEFAULT_LANGUAGE]

# Where Telegram shows a text, and its limit there.
CAPTIONS = {"result_caption", "me_current", "me_deleted"}  # 1024
ALERTS = {  # answerCallbackQuery: 200
    "full_size_gone",
    "full_size_sending",
    "retry_unavailable",
    "too_many_running",
    "refused_daily_limit",
    "refused_budget",
    "not_your_button",
    "not_allowed",
    "take_unavailable",
    "hd_off",
    "gender_saved",
    "fail_hd_expired",
    "history_gone",
    "result_resending",
}
BUTTON_LIMIT = 24  # what a phone shows on one button without cutting it
SAMPLE = {
    "position": 12345,
    "width": 149,
    "height": 4096,
    "done": 12345,
    "wait": "23 h 59 min",
    "time": "59 min 59 s",
    "hours": "23 h",
    "minutes": "59 min",
    "seconds": "59 s",
    "gender": "woman",
    "number": 12,
    "count": 10,
    "left": 12345,
    "ready": 12345,
    "most": 10,
    "reason": "That picture seems damaged and I can't open it. Please send another one.",
    "when": "2026-12-31 23:59",
}


@functools.cache
def po_catalog(lang: str) -> Catalog:
    info = LANGUAGE_INFO[lang]
    path = LOCALES / info.locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        return read_po(po, locale=info.locale)


def forms(lang: str, key: str) -> list[str]:
    """Every form of a message in a language (one for a message without a count)."""
    entry = MESSAGES[key]
    if lang == DEFAULT_LANGUAGE:
        return [entry.text] if entry.plural is None else [entry.text, entry.plural]
    message = po_catalog(lang).get(entry.text, key)
    assert message is not None, (lang, key)
    strings = message.string
    return [str(s) for s in strings] if isinstance(strings, (tuple, list)) else [str(strings)]


def render(lang: str, key: str, n: int = 21) -> str:
    entry = MESSAGES[key]
    count = n if entry.plural is not None else None
    return TEXTS.get(lang, key, n=count, **SAMPLE)


# ---- completeness -------------------------------------------------------------------------


def test_the_template_lists_every_message_and_nothing_else() -> None:
    with (LOCALES / "messages.pot").open("rb") as pot:
        template = read_po(pot)
    found = {message.context: message.id for message in template if message.id}
    declared = {
        key: entry.text if entry.plural is None else (entry.text, entry.plural)
        for key, entry in MESSAGES.items()
    }
    assert found == declared, "run `python3 dev.py i18n` after changing messages.py"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_catalog_translates_every_message(lang: str) -> None:
    catalog = po_catalog(lang)
    assert catalog.num_plurals == Catalog(locale=LANGUAGE_INFO[lang].locale).num_plurals
    seen = set()
    for message in catalog:
        if not message.id:
            continue
        key = message.context
        assert key in MESSAGES, f"{lang}: {key} is not declared in messages.py"
        entry = MESSAGES[key]
        expected = entry.text if entry.plural is None else (entry.text, entry.plural)
        assert message.id == expected, f"{lang}: {key} translates an old English text"
        assert not message.fuzzy, f"{lang}: {key} is fuzzy"
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert len(strings) == (1 if entry.plural is None else catalog.num_plurals), (lang, key)
        assert all(strings), f"{lang}: {key} is not translated"
        seen.add(key)
    assert seen == set(MESSAGES), f"{lang} misses {sorted(set(MESSAGES) - seen)}"


@pytest.mark.parametrize("lang", TRANSLATED)
def test_translations_keep_the_placeholders(lang: str) -> None:
    catalog = po_catalog(lang)
    plural_of = gettext.c2py(catalog.plural_expr)
    for key, entry in MESSAGES.items():
        english = placeholders(entry.text) | placeholders(entry.plural or "")
        texts = forms(lang, key)
        if entry.plural is None:
            assert placeholders(texts[0]) == english, (lang, key)
            continue
        # A form may leave the count out ("one hour", Arabic "two hours"), nothing else;
        # the forms for larger counts show it.
        for text in texts:
            assert placeholders(text) <= english, (lang, key, text)
            assert placeholders(text) >= english - {"n"}, (lang, key, text)
        for n in (5, 11, 100, 1000):
            assert placeholders(texts[plural_of(n)]) == english, (lang, key, n)


def test_a_translation_that_drops_or_adds_a_placeholder_is_caught() -> None:
    assert placeholders("#{position} в очереди") == {"position"}
    assert placeholders("в очереди") != placeholders(MESSAGES["stage_waiting"].text)
    assert placeholders("{width}×{height}×{depth}") != placeholders(
        MESSAGES["reject_too_small"].text
    )


# ---- plural rules ------------------------------------------------------------------------


def test_russian_has_three_forms() -> None:
    got = {n: TEXTS.get("ru", "tries_left", n=n) for n in (1, 2, 5, 11, 21, 22)}
    assert got == {
        1: "Сегодня осталась 1 примерка",
        2: "Сегодня осталось 2 примерки",
        5: "Сегодня осталось 5 примерок",
        11: "Сегодня осталось 11 примерок",
        21: "Сегодня осталась 21 примерка",
        22: "Сегодня осталось 22 примерки",
    }


def test_ukrainian_has_three_forms() -> None:
    assert TEXTS.get("uk", "tries_left", n=1).endswith("примірка")
    assert TEXTS.get("uk", "tries_left", n=3).endswith("примірки")
    assert TEXTS.get("uk", "tries_left", n=11).endswith("примірок")


def test_arabic_has_six_forms() -> None:
    texts = [TEXTS.get("ar", "tries_left", n=n) for n in (0, 1, 2, 3, 11, 100)]
    assert len(set(texts)) == 6
    assert "تجربتان" in texts[2] and "تجارب" in texts[3]  # dual; 3-10 take the plural
    assert TEXTS.get("ar", "hours", n=2) == "ساعتان"
    assert TEXTS.get("ar", "minutes", n=5) == f"{FSI}5{PDI} دقائق"


@pytest.mark.parametrize("lang", ["zh-hans", "zh-hant", "id"])
def test_languages_without_plurals_have_one_form(lang: str) -> None:
    assert len(forms(lang, "tries_left")) == 1
    assert TEXTS.get(lang, "tries_left", n=1).replace("1", "5") == TEXTS.get(
        lang, "tries_left", n=5
    )


def test_english_singular_and_plural() -> None:
    assert TEXTS.get("en", "tries_left", n=1) == "1 try-on left today"
    assert TEXTS.plural("en", "tries_left", 2) == "2 try-ons left today"
    assert TEXTS.get("en", "ready_count", n=5, done=4) == "4 of 5 ready"


def test_a_plural_message_needs_its_count() -> None:
    with pytest.raises(TypeError):
        TEXTS.get("en", "tries_left")


# ---- numbers and durations ---------------------------------------------------------------


def test_durations_in_the_language() -> None:
    assert TEXTS.duration("en", 42) == "42 s"
    assert TEXTS.duration("en", 65) == "1 min 5 s"
    assert TEXTS.duration("en", 3 * 3600 + 20 * 60 + 5, whole_minutes=True) == "3 h 21 min"
    assert TEXTS.duration("en", 299, whole_minutes=True) == "5 min"
    assert TEXTS.duration("ru", 3 * 3600 + 20 * 60) == "3 ч 20 мин"
    assert TEXTS.duration("zh-hans", 65) == "1 分钟 5 秒"
    assert TEXTS.duration("ar", 2 * 3600 + 60).replace(FSI, "").replace(PDI, "") == (
        "ساعتان ودقيقة واحدة"
    )


def test_numbers_use_the_languages_separators() -> None:
    assert TEXTS.get("en", "stage_waiting", position=1234) == "⏳ Waiting in line: #1,234"
    assert TEXTS.get("ru", "stage_waiting", position=1234) == "⏳ Ты в очереди: #1\xa0234"
    assert TEXTS.get("es", "tries_left", n=10000) == "Te quedan 10.000 pruebas hoy"


# ---- Telegram's limits, HTML --------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_fits_where_telegram_shows_it(lang: str) -> None:
    for key in MESSAGES:
        text = render(lang, key)
        limit = 4096
        if key in CAPTIONS:
            limit = 1024
        if key in ALERTS:
            limit = 200
        if key.startswith("cmd_"):
            limit = 256  # BotCommand description
        assert 0 < len(text) <= limit, (lang, key, len(text))
        if key.startswith("btn_") and len(MESSAGES[key].text) <= BUTTON_LIMIT:
            assert len(text) <= BUTTON_LIMIT, (lang, key, text)
        assert "<" not in text and ">" not in text and "&" not in text, (lang, key)
    assert len(f"✓ {LANGUAGE_INFO[lang].name}") <= BUTTON_LIMIT


@pytest.mark.parametrize("lang", LANGUAGES)
def test_command_descriptions_exist_for_every_menu_command(lang: str) -> None:
    for name in set(PRIVATE_COMMANDS) | set(GROUP_COMMANDS):
        assert TEXTS.get(lang, f"cmd_{name}")
        assert f"/{name}" in TEXTS.get(lang, "help") or name == "help"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_terms_are_the_same_everywhere(lang: str) -> None:
    """The button's word for top, bottom and dress is the word the prompts use."""

    def word(key: str) -> str:
        return TEXTS.get(lang, key).split(" ", 1)[1].casefold()

    assert word("btn_kind_top") in TEXTS.get(lang, "ask_top").casefold()
    assert word("btn_kind_bottom") in TEXTS.get(lang, "ask_bottom").casefold()
    assert word("btn_kind_dress") in TEXTS.get(lang, "ask_top").casefold()


def test_emoji_and_layout_stay_as_in_english() -> None:
    emoji = re.compile(r"^[\u2190-\u2bff\U0001f000-\U0001faff\ufe0f]+")
    for key, entry in MESSAGES.items():
        lead = emoji.match(entry.text)
        for lang in TRANSLATED:
            for text in forms(lang, key):
                if lead is not None:
                    assert text.startswith(lead.group(0)), (lang, key)
                assert text.count("\n") == entry.text.count("\n"), (lang, key)  # layout


# ---- right to left -------------------------------------------------------------------------


def balanced(text: str) -> bool:
    depth = 0
    for char in text:
        if char in (FSI, LRI, "\u2067"):
            depth += 1
        elif char == PDI:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


@pytest.mark.parametrize("lang", sorted(RTL_LANGUAGES))
def test_rtl_texts_isolate_numbers_commands_and_values(lang: str) -> None:
    for key in MESSAGES:
        text = render(lang, key)
        assert balanced(text), (lang, key)
        for command in re.findall(r"/[a-z]+", text):
            assert f"{LRI}{command}{PDI}" in text, (lang, key, command)
    waiting = TEXTS.get(lang, "stage_waiting", position=3)
    assert f"{FSI}#3{PDI}" in waiting
    # The first strong character decides a paragraph's direction: an isolate is skipped.
    hint = TEXTS.get(lang, "idle_hint")
    assert hint.index(LRI) < hint.index("/tryon")


def test_ltr_languages_get_no_isolates() -> None:
    for lang in set(LANGUAGES) - RTL_LANGUAGES:
        for key in MESSAGES:
            text = render(lang, key)
            assert not {FSI, LRI, PDI} & set(text), (lang, key)


# ---- choosing the language -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "lang"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("zh-hans", "zh-hans"),
        ("zh", "zh-hans"),
        ("zh-CN", "zh-hans"),
        ("zh-hant", "zh-hant"),
        ("zh-TW", "zh-hant"),
        ("zh-hk", "zh-hant"),
        ("pt", "pt-br"),
        ("pt-br", "pt-br"),
        ("pt-PT", "pt-br"),
        ("ru", "ru"),
        ("uk", "uk"),
        ("es-419", "es"),
        ("id", "id"),
        ("in", "id"),
        ("tr", "tr"),
        ("fa", "fa"),
        ("fa-IR", "fa"),
        ("ar", "ar"),
        ("ar-EG", "ar"),
        ("uz", "uz"),
        ("uz-Latn", "uz"),
        ("hi", "hi"),
        ("fr", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_choice(code: str | None, lang: str) -> None:
    assert language_for(code) == lang


def test_unknown_language_and_missing_translation_fall_back_to_english() -> None:
    assert TEXTS.get("fr", "cannot_skip_person") == TEXTS.get("en", "cannot_skip_person")
    empty = Texts({"ru": gettext.NullTranslations()})
    assert empty.get("ru", "btn_skip") == MESSAGES["btn_skip"].text


def test_names_put_into_rtl_texts_are_isolated() -> None:
    mention = '<a href="tg://user?id=1">Ann</a>'
    assert isolate(mention, TEXTS.get("fa", "ask_top")) == f"{FSI}{mention}{PDI}"
    assert isolate(mention, TEXTS.get("ru", "ask_top")) == mention
