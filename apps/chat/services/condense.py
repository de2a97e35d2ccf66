"""Follow-up questions: complete a message that leans on the conversation with the earlier question.

Each turn is retrieved on its own words, so "and for a sofa?" after "how long does delivery take?" would
search for sofas. Offline, without a language model, a message that depends on the conversation (short, or
opening with an anaphoric/elliptic cue in one of the supported languages) is searched together with the key
terms of the previous customer question of the same conversation; a message that announces a new topic
("Different question: …", "Andere Frage: …", "ところで…") or is long enough to stand alone is searched
alone. With a tenant language model, the same rule decides whether to ask it for a standalone rewrite
(services/conversations.py).

Pure functions over strings: the caller reads the history (this conversation's earlier customer questions,
never another's) and decides what to do with the result.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# A message of at most this many words (Latin scripts) or characters (Japanese) with at most SHORT_TERMS
# subject words is a follow-up when there is a question before it ("is there a credit check?"); one with more
# names its own subject ("invoice pdf", "supprimer compte"). Up to twice as long, it is one only with a word
# that points back ("that", "ça", "eso", "それ") and at most CUE_TERMS subject words.
MAX_WORDS = 7
MAX_JA_CHARS = 18
SHORT_TERMS = 2
CUE_TERMS = 3
# Key terms carried from the previous question (its first ones: customers name the subject early).
MAX_TERMS = 8

_WORD = re.compile(r"[^\W\d_][\w'\u2019-]*|\d+", re.UNICODE)
# Japanese content words: runs of kanji or katakana (particles and inflections are hiragana).
_JA_TERM = re.compile(r"[\u30a0-\u30ff\u4e00-\u9fff\u3005\uff66-\uff9f]{2,}|[\u4e00-\u9fff]")
_JA = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _phrases(*items: str) -> re.Pattern[str]:
    """Case-insensitive phrases; Latin ones match whole words, Japanese ones anywhere."""
    parts = [
        re.escape(i) if not i.isascii() and _JA.search(i) else rf"(?<!\w){re.escape(i)}(?!\w)" for i in items
    ]
    return re.compile("|".join(parts), re.IGNORECASE)


# A new topic, announced: the earlier subject must not be carried into it.
_SWITCH = _phrases(
    # en
    "different question", "another question", "other question", "unrelated", "new question",
    "another thing", "something else", "by the way", "btw", "changing the subject", "change of subject",
    "never mind", "forget it", "separate question", "on another note",
    # de
    "andere frage", "noch eine frage", "neue frage", "noch was anderes", "etwas anderes", "was anderes",
    "übrigens", "themawechsel", "anderes thema", "egal", "vergiss es", "ganz andere sache",
    # fr
    "autre question", "autre chose", "rien à voir", "au fait", "sinon", "laissez tomber", "laisse tomber",
    "changement de sujet", "nouvelle question", "par ailleurs", "d'ailleurs",
    # es
    "otra pregunta", "otra cosa", "cambiando de tema", "por cierto", "olvídalo", "olvidalo", "déjalo",
    "nueva pregunta", "aparte de eso", "otro tema", "no tiene que ver",
    # ja
    "別の質問", "話は変わります", "話は変わって", "ところで", "それはもういい", "別件", "話変わって",
    "関係ないですが", "それとは別に", "さておき",
)  # fmt: skip
# Openers of an elliptic follow-up ("and for a sofa?", "und wenn …", "et si …", "じゃあ…"): at the start of
# any message, however long.
_OPENER = re.compile(
    r"^\W*(?:(?:and|but|what about|how about|what if|und|aber|was ist mit|und wenn|et|mais|et si|et pour|"
    r"y|pero|y si|y para|qué tal|o sea)(?!\w)|じゃあ|では|それ|その|なら)",
    re.IGNORECASE,
)
# Words that point back at the earlier subject, anywhere in a message of middling length.
_CUE = _phrases(
    # en
    "it", "its", "that", "this", "those", "these", "them", "they", "same", "again", "instead", "either",
    # de ("das" and "die" are articles as often as pronouns)
    "dies", "diese", "dieser", "dieses", "ihn", "ihm", "dafür", "dazu", "damit", "davon", "darauf",
    "dabei", "nochmal", "so einen", "so eine", "so ein", "so was",
    # fr
    "ça", "cela", "ceci", "celui", "celle", "ceux", "celles", "pareil", "le même", "la même",
    # es
    "eso", "esto", "ese", "esa", "esos", "esas", "ello", "lo", "el mismo", "la misma",
    # ja
    "それ", "これ", "あれ", "その", "この", "そこ", "そちら", "の場合", "は?", "も?", "たら?",
)  # fmt: skip
# Words that carry no subject: carried key terms are what is left of a question without them.
_STOPWORDS = frozenset(
    """
    a an the and or but if of to in on at by for with from about as into over after before up down out off
    is are was were be been being am do does did done have has had can could will would shall should may
    might must i me my mine we us our you your yours he him his she her it its they them their this that
    these those there here what which who whom whose when where why how much many long still just also
    again very too so not no yes ok okay please thanks thank hi hello hey any some all more most other such
    only own same than then once get got make made want need know tell anything something
    der die das den dem des ein eine einer eines einem einen und oder aber wenn ob von zu im in am an auf
    aus bei mit nach seit für über unter um vor ist sind war waren sein bin bist hat habe haben hatte kann
    können könnte muss müssen soll sollte will wollen wird werden würde ich mich mir mein meine meinen
    meinem meiner wir uns unser du dich dir dein sie ihr ihre ihren ihrem er es ihn ihm wie was wo wann
    warum wer welche welcher welches wie lange noch schon auch nur sehr da dann denn doch mal ja nein nicht
    kein keine bitte danke hallo gibt gibt's man so
    le la les un une des du de d l et ou mais si à au aux en dans sur sous par pour avec sans est sont
    était être ai as avez avons ont fait faire peux peut pouvez puis je j me m moi mon ma mes nous notre
    vous votre vos tu te toi ton ta tes il elle ils elles on se s son sa ses leur leurs ce c cet cette
    ces ça cela qui que qu quoi quel quelle quels quelles comment où quand pourquoi combien encore déjà
    aussi très pas ne n plus oui non merci bonjour y
    el la los las un una unos unas lo de del al y o pero si en con sin por para sobre es son era ser
    estar está están he ha han hay puedo puede pueden podría tengo tiene tienen hacer hago yo me mi mis
    nosotros nuestro nuestra usted ustedes su sus tu te ti él ella ellos ellas se que qué quién cuál
    cuáles cómo dónde cuándo cuánto cuánta cuántos cuántas por qué ya todavía también muy no sí gracias
    hola favor
    """.split()  # noqa: SIM905 - a word list reads best as text
)


@dataclass(frozen=True)
class Condensed:
    """What retrieval searches for, and the earlier question it was completed with ("" when standalone)."""

    query: str
    context: str = ""

    @property
    def depends(self) -> bool:
        return bool(self.context)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def is_japanese(text: str) -> bool:
    return bool(_JA.search(text))


def is_switch(message: str) -> bool:
    """The message announces a new topic."""
    return bool(_SWITCH.search(_fold(message)))


def depends_on_conversation(message: str) -> bool:
    """Whether `message` only makes sense with the question before it: not announcing a new topic, and
    opening like a follow-up ("and …"), or short and with hardly a subject of its own, or of middling
    length with a word that points back.
    Languages are told apart by script, not by the conversation's locale: customers write as they like."""
    text = _fold(message)
    if not text or is_switch(text):
        return False
    if _OPENER.search(text):
        return True
    if is_japanese(text):
        size, limit = len(re.sub(r"[\s\W]", "", text)), MAX_JA_CHARS
    else:
        size, limit = len(_WORD.findall(text)), MAX_WORDS
    terms = len(key_terms(text, limit=CUE_TERMS + 1))
    if size <= 2 * limit and terms <= CUE_TERMS and _CUE.search(text):
        return True
    return size <= limit and terms <= SHORT_TERMS


def key_terms(text: str, *, limit: int = MAX_TERMS) -> list[str]:
    """The subject words of `text`: no function words, no question words, each once, in order."""
    folded = _fold(text)
    if is_japanese(folded):
        terms = _JA_TERM.findall(folded)
    else:
        terms = [w for w in _WORD.findall(folded) if w.casefold() not in _STOPWORDS and len(w) > 1]
    seen: set[str] = set()
    unique = []
    for term in terms:
        if term.casefold() not in seen:
            seen.add(term.casefold())
            unique.append(term)
    return unique[:limit]


def _join(context: str, message: str) -> str:
    terms = key_terms(context)
    return " ".join([*terms, message]) if terms else message


def condense(message: str, history: Sequence[str]) -> Condensed:
    """The retrieval query for `message` given this conversation's earlier customer questions (oldest first).

    An earlier question that was itself a follow-up is first completed by the ones before it, so a chain
    ("can I return shoes?" → "how long does that take?" → "and for a sofa?") keeps its subject.
    """
    context = ""
    for earlier in history:
        earlier = earlier.strip()
        if not earlier:
            continue
        context = _join(context, earlier) if context and depends_on_conversation(earlier) else earlier
    if not context or not depends_on_conversation(message):
        return Condensed(query=message)
    return Condensed(query=_join(context, message), context=context)
