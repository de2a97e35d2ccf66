from django.urls import path

from apps.integrations.views import connections as views

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
from apps.integrations.views import webhooks as webhook_views  # noqa: E402

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
