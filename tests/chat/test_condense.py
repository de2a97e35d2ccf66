# ruff: noqa: RUF001 - Japanese questions are written with full-width question marks
"""The offline follow-up rule (apps/chat/services/condense.py), per language: what depends on the
conversation, what announces a new topic or stands alone, and what is carried from the earlier question."""

from __future__ import annotations

import pytest

from apps.chat.services.condense import Condensed, condense, depends_on_conversation, is_switch, key_terms

FOLLOW_UPS = {
    "en": ["and for a sofa?", "what about a wardrobe?", "how long does that take?",
           "is there a credit check?",
           "And what if the parcel has already left the warehouse and is on its way to me?",
           "ok and who pays for sending it back?"],
    "de": ["und bei Möbeln?", "Und wenn es schon verschickt ist?", "Verfallen die irgendwann?",
           "was ist mit Lampen?", "Und gilt das auch für Lampen aus dem Outlet?", "Kostet das dafür extra?"],
    "fr": ["et pour les canapés ?", "et si je perds mon téléphone ?", "c'est payant ?",
           "Et si le colis est déjà parti de l'entrepôt, est-ce que je peux encore changer l'adresse ?"],
    "es": ["¿y para un sofá?", "¿y si ya lo han enviado?", "¿es gratis?", "vale, ¿y cómo la reclamo?"],
    "ja": ["それはいつ届きますか？", "もう発送されていたら？", "申請の仕方は？", "期限はありますか？",
           "じゃあ、北海道や沖縄に住んでいる場合でも同じ日数で届けてもらえるのでしょうか？"],
}  # fmt: skip
STANDALONE = {
    "en": ["Different question: how do I change my email address?", "Another thing: my promo code fails",
           "invoice pdf download", "How do I delete my account and all of my personal data?",
           "Thanks. Unrelated, but what are your phone hours?"],
    "de": ["Andere Frage: wie lösche ich mein Konto?",
           "Noch was anderes: ich finde die Aufbauanleitung nicht",
           "Versandkosten nach Österreich berechnen",
           "Übrigens, wie lange dauert eine Rückerstattung per PayPal?"],
    "fr": ["Autre question : comment télécharger ma facture ?", "Sinon, comment je désactive les cookies ?",
           "supprimer mon compte client", "Bon, laissez tomber. Comment gagner des points fidélité ?"],
    "es": ["Otra pregunta: ¿cómo cambio mi contraseña?", "Cambiando de tema, ¿a qué hora abre el chat?",
           "Por cierto, ¿cómo descargo la factura?", "cambiar correo electrónico cuenta"],
    "ja": ["別の質問ですが、パスワードを忘れました。", "ところで、組み立て説明書をなくしました。",
           "それはもういいです。アカウントを削除するには？",
           "先週注文したソファの配送日を変更したいのですが、どこから手続きできますか？"],
}  # fmt: skip


@pytest.mark.parametrize(("locale", "text"), [(lo, t) for lo, items in FOLLOW_UPS.items() for t in items])
def test_a_follow_up_depends_on_the_conversation(locale: str, text: str) -> None:
    assert depends_on_conversation(text), text


@pytest.mark.parametrize(("locale", "text"), [(lo, t) for lo, items in STANDALONE.items() for t in items])
def test_a_new_topic_or_a_whole_question_stands_alone(locale: str, text: str) -> None:
    assert not depends_on_conversation(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Different question: x",
        "ANDERE FRAGE: x",
        "au fait, x",
        "Por cierto x",
        "ところで、x",
        "話は変わりますが",
    ],
)
def test_switch_markers(text: str) -> None:
    assert is_switch(text)


@pytest.mark.parametrize("text", ["and the other one?", "und das?", "différent", "otra vez?", "それは？"])
def test_no_switch_marker(text: str) -> None:
    assert not is_switch(text)


def test_key_terms_leave_out_function_and_question_words() -> None:
    assert key_terms("How long does standard delivery take for a sofa?") == [
        "standard",
        "delivery",
        "take",
        "sofa",
    ]
    assert key_terms("Wie lange gilt die Garantie auf Sofas?") == ["gilt", "Garantie", "Sofas"]
    assert key_terms("Je peux retourner un fauteuil que je n'aime pas ?") == [
        "retourner",
        "fauteuil",
        "n'aime",
    ]
    assert key_terms("¿Cómo se limpia un sofá de cuero?") == ["limpia", "sofá", "cuero"]
    assert key_terms("ソファの配送料はいくらですか？") == ["ソファ", "配送料"]
    assert key_terms("the THE The sofa Sofa") == ["sofa"]
    assert len(key_terms(" ".join(f"word{i}x" for i in range(30)))) == 8
    assert key_terms("?!") == []


def test_condense_carries_the_earlier_subject_into_a_follow_up() -> None:
    assert condense("and for a sofa?", ["How long does standard delivery take?"]) == Condensed(
        query="standard delivery take and for a sofa?", context="How long does standard delivery take?"
    )
    condensed = condense("それはいつ届きますか？", ["ソファの配送料はいくらですか？"])
    assert condensed.query == "ソファ 配送料 それはいつ届きますか？"
    assert condensed.depends


def test_condense_leaves_a_first_message_or_a_new_topic_alone() -> None:
    assert condense("and for a sofa?", []) == Condensed(query="and for a sofa?")
    assert condense("and for a sofa?", ["", "  "]) == Condensed(query="and for a sofa?")
    switch = "Different question: how do I change my email address?"
    assert condense(switch, ["How long does a refund take?"]) == Condensed(query=switch)
    assert not condense(switch, ["How long does a refund take?"]).depends


def test_a_chain_of_follow_ups_keeps_the_first_subject() -> None:
    history = ["Can I return a rug?", "how long do I have?"]
    condensed = condense("and for a lamp?", history)
    assert condensed.query.startswith("return rug")
    assert "lamp" in condensed.query
    # A new topic in between starts a new chain.
    history = ["Can I return a rug?", "Different question: how do I reset my password?"]
    assert "rug" not in condense("and if the link never arrives?", history).query


def test_a_follow_up_after_a_question_with_no_subject_words_is_kept_as_is() -> None:
    assert condense("and that?", ["what is it?"]) == Condensed(query="and that?", context="what is it?")
