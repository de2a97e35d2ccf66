from django.urls import path

from apps.knowledge import learning_views, views, xliff_views

app_name = "knowledge"

_KB = "t/<slug:tenant_slug>/knowledge/<uuid:kb_id>/"
urlpatterns = [
    path("t/<slug:tenant_slug>/knowledge/", views.kb_list_view, name="kb-list"),
    path("t/<slug:tenant_slug>/knowledge/review/", views.review_queue_view, name="review-queue"),
    path(
        "t/<slug:tenant_slug>/knowledge/review/<int:pk>/approve/",
        views.review_approve_view,
        name="review-approve",
    ),
    path(
        "t/<slug:tenant_slug>/knowledge/review/<int:pk>/reject/",
        views.review_reject_view,
        name="review-reject",
    ),
    path("t/<slug:tenant_slug>/knowledge/search/", views.search_preview_view, name="search-preview"),
    path(_KB, views.kb_detail_view, name="kb-detail"),
    path(_KB + "import/", views.kb_import_connection_view, name="kb-import-connection"),
    # knowledge_search's citation URLs point here (selectors._citation_url).
    path(_KB + "articles/<str:key>/", views.article_view, name="article"),
    # ?region=eu edits (or creates) that region's variant of the locale.
    path(_KB + "articles/<str:key>/edit/<str:locale>/", views.editor_view, name="editor"),
]
# --- learning loop ---
urlpatterns += [
    path(_KB + "unanswered/", learning_views.learning_view, name="learning"),
    path(_KB + "unanswered/attach/", learning_views.learning_attach_view, name="learning-attach"),
    path(_KB + "unanswered/dismiss/", learning_views.learning_dismiss_view, name="learning-dismiss"),
]
# --- issue 21: insights (a new article from a group of unanswered questions) ---
urlpatterns += [
    path(_KB + "unanswered/create/", learning_views.learning_create_view, name="learning-create"),
]
# --- issue 21, slice "xliff": exchange with translators (apps/knowledge/xliff_views.py) ---
urlpatterns += [
    path(_KB + "xliff/", xliff_views.xliff_view, name="xliff"),
    path(_KB + "xliff/export/", xliff_views.xliff_export_view, name="xliff-export"),
    # issue 21, slice "xliff2": an import's page (imports run in the background)
    path(_KB + "xliff/imports/<int:import_id>/", xliff_views.xliff_import_view, name="xliff-import"),
]
