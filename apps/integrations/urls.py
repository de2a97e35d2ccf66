from django.urls import path

from apps.integrations.views import connections as views
from apps.integrations.views import deadletters as deadletter_views
from apps.integrations.views import sync as sync_views
from apps.integrations.views import webhooks as webhook_views

app_name = "integrations"

urlpatterns = [
    path("t/<slug:tenant_slug>/connections/", views.connection_list_view, name="connection-list"),
    path("t/<slug:tenant_slug>/connections/new/", views.connection_create_view, name="connection-create"),
    path("t/<slug:tenant_slug>/connections/<uuid:pk>/", views.connection_edit_view, name="connection-edit"),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/test/", views.connection_test_view, name="connection-test"
    ),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/enabled/",
        views.connection_enable_view,
        name="connection-enable",
    ),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/field-map/",
        views.connection_field_map_view,
        name="connection-field-map",
    ),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/access/grant/",
        views.connection_grant_view,
        name="connection-grant",
    ),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/access/revoke/",
        views.connection_revoke_view,
        name="connection-revoke",
    ),
    path(
        "t/<slug:tenant_slug>/connections/<uuid:pk>/delete/",
        views.connection_delete_view,
        name="connection-delete",
    ),
]

# Public webhook endpoints (views/webhooks.py): no tenant slug, the connection id names the tenant.

urlpatterns += [
    path("hooks/hubspot/<uuid:connection_id>/", webhook_views.hubspot_webhook_view, name="webhook-hubspot"),
    path(
        "hooks/salesforce/<uuid:connection_id>/<str:token>/",
        webhook_views.salesforce_webhook_view,
        name="webhook-salesforce",
    ),
    path(
        "hooks/servicenow/<uuid:connection_id>/",
        webhook_views.servicenow_webhook_view,
        name="webhook-servicenow",
    ),
]

# The sync console (views/sync.py).

_STREAM = "t/<slug:tenant_slug>/sync/<uuid:pk>/<slug:stream>/"
urlpatterns += [
    path("t/<slug:tenant_slug>/sync/", sync_views.sync_overview_view, name="sync-overview"),
    path("t/<slug:tenant_slug>/sync/runs/<int:run_id>/", sync_views.sync_run_view, name="sync-run"),
    path(
        "t/<slug:tenant_slug>/sync/<uuid:pk>/webhooks/", sync_views.sync_webhooks_view, name="sync-webhooks"
    ),
    path(
        "t/<slug:tenant_slug>/sync/<uuid:pk>/webhooks/rotate/",
        sync_views.sync_webhook_rotate_view,
        name="sync-webhook-rotate",
    ),
    path(
        "t/<slug:tenant_slug>/sync/<uuid:pk>/webhooks/org/",
        sync_views.sync_webhook_org_view,
        name="sync-webhook-org",
    ),
    path(_STREAM, sync_views.sync_stream_view, name="sync-stream"),
    path(_STREAM + "sync-now/", sync_views.sync_now_view, name="sync-now"),
    path(_STREAM + "backfill/", sync_views.sync_backfill_view, name="sync-backfill"),
    path(_STREAM + "pause/", sync_views.sync_pause_view, name="sync-pause"),
    path(_STREAM + "resume/", sync_views.sync_resume_view, name="sync-resume"),
    path(_STREAM + "schedule/", sync_views.sync_schedule_view, name="sync-schedule"),
]

# Dead letters (views/deadletters.py).

urlpatterns += [
    path("t/<slug:tenant_slug>/dead-letters/", deadletter_views.deadletter_list_view, name="deadletter-list"),
    path(
        "t/<slug:tenant_slug>/dead-letters/<int:pk>/",
        deadletter_views.deadletter_detail_view,
        name="deadletter-detail",
    ),
    path(
        "t/<slug:tenant_slug>/dead-letters/<int:pk>/replay/",
        deadletter_views.deadletter_replay_view,
        name="deadletter-replay",
    ),
    path(
        "t/<slug:tenant_slug>/dead-letters/<int:pk>/discard/",
        deadletter_views.deadletter_discard_view,
        name="deadletter-discard",
    ),
]
