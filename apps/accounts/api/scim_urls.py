"""/scim/v2/ (included at the root by hub/urls.py)."""

from django.urls import path, re_path

from apps.accounts.api import scim as api

app_name = "scim"

urlpatterns = [
    path("ServiceProviderConfig", api.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    path("ResourceTypes", api.ResourceTypesView.as_view(), name="resource-types"),
    path("ResourceTypes/<str:name>", api.ResourceTypesView.as_view(), name="resource-type"),
    path("Schemas", api.SchemasView.as_view(), name="schemas"),
    path("Schemas/<str:urn>", api.SchemasView.as_view(), name="schema"),
    path("Users", api.UsersView.as_view(), name="users"),
    path("Users/<str:scim_id>", api.UserDetailView.as_view(), name="user"),
    path("Groups", api.GroupsView.as_view(), name="groups"),
    path("Groups/<str:scim_id>", api.GroupDetailView.as_view(), name="group"),
    re_path(r"^.*$", api.NotFoundView.as_view(), name="not-found"),
]
