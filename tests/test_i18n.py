from services.i18n import Texts, language_for, placeholders


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    texts = Texts.load()
    en, zh = texts.catalogs["en"], texts.catalogs["zh"]
    assert set(en) == set(zh)
    for key in en:
        assert placeholders(en[key]) == placeholders(zh[key]), key


def test_no_catalog_text_breaks_html_parse_mode() -> None:
    for catalog in Texts.load().catalogs.values():
        for key, text in catalog.items():
            assert "<" not in text and ">" not in text and "&" not in text, key


def test_language_choice() -> None:
    assert language_for("zh-hans") == "zh"
    assert language_for("zh-TW") == "zh"
    assert language_for("en") == "en"
    assert language_for("ru") == "en"
    assert language_for(None) == "en"


def test_unknown_language_falls_back_to_english() -> None:
    texts = Texts.load()
    assert texts.get("fr", "cannot_skip_person") == texts.get("en", "cannot_skip_person")
