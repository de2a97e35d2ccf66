from django.urls import path

from apps.siem import views

app_name = "siem"

urlpatterns = [
    path("t/<slug:tenant_slug>/siem/", views.destination_list_view, name="destination-list"),
    path("t/<slug:tenant_slug>/siem/new/", views.destination_create_view, name="destination-create"),
    path("t/<slug:tenant_slug>/siem/<uuid:pk>/", views.destination_edit_view, name="destination-edit"),
    path(
        "t/<slug:tenant_slug>/siem/<uuid:pk>/toggle/",
        views.destination_toggle_view,
        name="destination-toggle",
    ),
    path(
        "t/<slug:tenant_slug>/siem/<uuid:pk>/delete/",
        views.destination_delete_view,
        name="destination-delete",
    ),
    path("t/<slug:tenant_slug>/siem/<uuid:pk>/test/", views.destination_test_view, name="destination-test"),
]
