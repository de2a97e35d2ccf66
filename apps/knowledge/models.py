"""Knowledge bases (region silo): articles, per-locale translations, regional variants, revisions, chunks.

A regional variant is a translation row with a `region` (the generic one has none): both share the workflow,
the revision history and the indexing, and a variant simply wins over the generic text for its region.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import OpClass
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Cast
from django.utils.translation import gettext_lazy as _
from pgvector.django import HalfVectorField, HnswIndex, VectorField

from apps.core.models import RegionModel, RegionObjectModel, TenantScopedManager
from apps.tenants.models import locale_validator

#: A phrasing is a customer question, not an essay; a text has at most PHRASINGS_MAX of them.
PHRASING_MAX_CHARS = 200
PHRASINGS_MAX = 40

#: Dimensions of every stored vector (the USE model; other providers must project to it).
EMBEDDING_DIMENSIONS = 512

key_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$",
    _("Use 1-100 lowercase letters, digits, dots, hyphens and underscores."),
)
# The hub's region codes (settings.HUB_REGIONS, the Region table): lower case, as in "eu" or "us". Services
# lower-case input and check it against the configured regions; the format check guards the column.
region_validator = RegexValidator(r"^[a-z][a-z0-9]{1,15}$", _("Use a region code such as “eu” or “us”."))


class KnowledgeBase(RegionObjectModel):
    """A tenant's collection of articles, written in a source locale and translated into others."""

    hub_silo: ClassVar[str] = "region"

    name = models.CharField(_("name"), max_length=100)
    source_locale = models.CharField(_("source locale"), max_length=16, validators=[locale_validator])
    enabled_locales = ArrayField(
        models.CharField(max_length=16, validators=[locale_validator]),
        default=list,
        blank=True,
        verbose_name=_("enabled locales"),
    )
    regions = ArrayField(
        models.CharField(max_length=16, validators=[region_validator]),
        default=list,
        blank=True,
        verbose_name=_("regions served"),
        help_text=_("Regions that may have regional variants, e.g. eu, us."),
    )
    four_eyes = models.BooleanField(
        _("require four-eyes review"),
        default=True,
        help_text=_("The person who approves a change cannot be its last author."),
    )
    # Vectors of this model answer searches; while `reindex_model` is being built, search keeps using these.
    embedding_model = models.CharField(_("embedding model"), max_length=200, blank=True, default="")
    reindex_model = models.CharField(max_length=200, blank=True, default="")
    # Issue 21: the public help center (apps/helpcenter) serves this base's published text when enabled, at
    # /help/<tenant>/<helpcenter_handle>/ (and on its custom domain, if an operator configured one).
    helpcenter_enabled = models.BooleanField(
        _("public help center"),
        default=False,
        help_text=_("Publish this knowledge base's published articles on a public help center."),
    )
    helpcenter_handle = models.SlugField(
        _("help center address"),
        max_length=50,
        blank=True,
        default="",
        help_text=_("The name in the help center's address, e.g. “support”."),
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant_id", "name"], name="knowledgebase_unique_name"),
            models.UniqueConstraint(
                fields=["tenant_id", "helpcenter_handle"],
                condition=~models.Q(helpcenter_handle=""),
                name="knowledgebase_unique_helpcenter_handle",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def locales(self) -> list[str]:
        """The source locale first, then the other enabled locales."""
        return [self.source_locale, *[loc for loc in self.enabled_locales if loc != self.source_locale]]


class Article(RegionModel):
    """One piece of knowledge, identified by a stable key across locales, regions and imports."""

    hub_silo: ClassVar[str] = "region"

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="articles")
    key = models.CharField(_("key"), max_length=100, validators=[key_validator])

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["kb", "key"], name="article_unique_key")]

    def __str__(self) -> str:
        return self.key


class Status(models.TextChoices):
    DRAFT = "draft", _("Draft")
    IN_REVIEW = "in_review", _("In review")
    PUBLISHED = "published", _("Published")
    ARCHIVED = "archived", _("Archived")


class Translation(RegionModel):
    """An article's text in one locale (and, for a regional variant, one region): the working copy.

    `published_revision` is what readers and search see; editing a published text starts a new draft
    while the published revision stays live until the draft is approved.
    """

    hub_silo: ClassVar[str] = "region"

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="translations")
    locale = models.CharField(_("locale"), max_length=16, validators=[locale_validator])
    region = models.CharField(
        _("region"), max_length=16, blank=True, default="", validators=[region_validator]
    )
    title = models.CharField(_("title"), max_length=300)
    body = models.TextField(_("body (Markdown)"), blank=True)
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True, verbose_name=_("tags"))
    # Other ways customers ask what this text answers: embedded and matched question-to-question, never shown
    # to customers; reviewed and translated with the text (each locale has its own).
    phrasings = ArrayField(
        models.CharField(max_length=PHRASING_MAX_CHARS),
        default=list,
        blank=True,
        verbose_name=_("other ways customers ask this"),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    needs_update = models.BooleanField(_("needs update"), default=False)
    # The source text this translation was last brought in line with.
    source_revision = models.ForeignKey(
        "Revision", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_revision = models.ForeignKey(
        "Revision", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField(null=True, blank=True)
    # The reviewer's reason when the last review sent the text back to draft (cleared on the next submit).
    rejection_reason = models.TextField(_("reason for rejection"), blank=True, default="")
    rejected_by_id = models.BigIntegerField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["article__key", "locale", "region"]
        constraints = [
            models.UniqueConstraint(
                fields=["article", "locale", "region"], name="translation_unique_locale_region"
            )
        ]

    def __str__(self) -> str:
        suffix = f"/{self.region}" if self.region else ""
        return f"{self.article_id}:{self.locale}{suffix}"

    @property
    def is_variant(self) -> bool:
        return bool(self.region)


class VariantManager(TenantScopedManager):
    def get_queryset(self) -> models.QuerySet[Any]:
        return super().get_queryset().exclude(region="")


class RegionalVariant(Translation):
    """A translation that overrides the generic text of its locale for one region (e.g. EU returns)."""

    objects: ClassVar[VariantManager] = VariantManager()

    class Meta:
        proxy = True


class Revision(RegionModel):
    """One saved version of a translation or variant; never changed after it is written."""

    hub_silo: ClassVar[str] = "region"

    translation = models.ForeignKey(Translation, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    phrasings = ArrayField(models.CharField(max_length=PHRASING_MAX_CHARS), default=list, blank=True)
    author_id = models.BigIntegerField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["translation", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["translation", "number"], name="revision_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.translation_id}#{self.number}"


class ChunkKind(models.TextChoices):
    """What a chunk holds: a piece of the text (cited), or a search key pointing at the text (never cited)."""

    CONTENT = "content", _("Text")
    TITLE = "title", _("Title")
    PHRASING = "phrasing", _("Phrasing")


class Chunk(RegionModel):
    """A heading-aware piece of a published text with its vector and full-text index entry.

    Besides the text's pieces (`kind` content), its title and each phrasing are chunks of their own, matched
    question-to-question: they make the article found, while only content chunks are cited.

    `chunk_hash` is stable for unchanged text, so re-publishing only embeds what changed; one chunk can
    exist once per embedding model, which lets a new model be built beside the one search still uses.
    """

    hub_silo: ClassVar[str] = "region"

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    translation = models.ForeignKey(Translation, on_delete=models.CASCADE, related_name="chunks")
    article_key = models.CharField(max_length=100)
    locale = models.CharField(max_length=16)
    region = models.CharField(max_length=16, blank=True, default="")  # "": the generic text
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PUBLISHED)
    # A database default too: bulk loads (COPY, raw INSERT) written before kinds existed still load text.
    kind = models.CharField(
        max_length=16, choices=ChunkKind.choices, default=ChunkKind.CONTENT, db_default=ChunkKind.CONTENT
    )
    chunk_hash = models.CharField(max_length=64)
    position = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    heading_path = ArrayField(models.CharField(max_length=300), default=list, blank=True)
    text = models.TextField()
    model_id = models.CharField(max_length=200)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    ts_config = models.CharField(max_length=32)
    tsv = SearchVectorField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chunk_hash", "model_id"], name="chunk_unique_hash_model")
        ]
        indexes = [
            # Half precision: half the size of a float32 index, so it stays in memory (search uses the same
            # expression; bench_knowledge measures its recall against an exact float32 scan).
            HnswIndex(
                OpClass(
                    Cast("embedding", HalfVectorField(dimensions=EMBEDDING_DIMENSIONS)),
                    name="halfvec_cosine_ops",
                ),
                name="chunk_embedding_hnsw_half",
                m=16,
                ef_construction=64,
            ),
            # Full text: an expression GIN index over tsv plus a "~<locale>" term (chunk_tsv_locale_gin), made
            # by migration 0004 because Django cannot express it; see selectors.LOCALIZED_TSV_SQL.
            models.Index(fields=["tenant_id", "kb", "article_key"], name="chunk_article"),
        ]

    def __str__(self) -> str:
        return f"{self.article_key}/{self.locale}#{self.position}"


# --- Learning loop (issue 20): questions the assistant could not answer ------------------------------------
class LearnedAction(models.TextChoices):
    ATTACHED = "attached", _("Added as a phrasing")
    DISMISSED = "dismissed", _("Dismissed")
    CREATED = "created", _("Article created")  # issue 21: "Create article from this"


class LearnedQuestion(RegionModel):
    """A customer question an editor has dealt with for one knowledge base, so it leaves the list of
    unanswered questions (apps/knowledge/learning.py).

    Keyed by the knowledge base locale and a hash of the question's redacted, normalized text (no question
    text is kept here): the same question asked again matches. Dismissed questions stay hidden; attached
    ones hide what was asked until `handled_at` (the phrasing answers the next ones; one that still falls
    back comes back to the list).
    """

    hub_silo: ClassVar[str] = "region"

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    text_hash = models.CharField(max_length=64)
    action = models.CharField(max_length=16, choices=LearnedAction.choices)
    article_key = models.CharField(max_length=100, blank=True, default="")
    locale = models.CharField(max_length=16)
    region = models.CharField(max_length=16, blank=True, default="")  # of the text attached to
    actor_id = models.BigIntegerField(null=True, blank=True)
    handled_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kb", "locale", "text_hash"], name="learnedquestion_unique_hash")
        ]

    def __str__(self) -> str:
        return f"{self.kb_id}:{self.text_hash[:12]} ({self.action})"


class XliffImportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class XliffImport(RegionModel):
    """An uploaded XLIFF file applied in the background (apps/knowledge/xliff.py), with what it did.

    The file is kept as uploaded (bytes: UTF-16 files from Windows tools declare their encoding) until the
    import is purged, 30 days after the upload. `result` holds the counts and the per-unit errors.
    """

    hub_silo: ClassVar[str] = "region"

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    locale = models.CharField(max_length=16)
    region = models.CharField(max_length=16, blank=True, default="")
    filename = models.CharField(max_length=120)
    content = models.BinaryField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=XliffImportStatus.choices, default=XliffImportStatus.QUEUED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    failure = models.TextField(blank=True, default="")

    class Meta:
        indexes = [
            models.Index(fields=["kb", "-created_at"], name="xliffimport_kb_recent"),
            models.Index(fields=["status", "updated_at"], name="xliffimport_status"),
        ]

    def __str__(self) -> str:
        return f"{self.kb_id}:{self.filename} ({self.status})"
