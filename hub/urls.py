"""Root URL configuration."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts.admin import admin_site  # the default admin site as django-otp's OTPAdminSite
from apps.observability import views as observability


class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI from our own static files with no inline script or style (CSP script-src/style-src 'self'):
    the split view loads its start-up script from a second request to the same URL, and our page template
    links a stylesheet instead of drf-spectacular's inline <style>. Access: hub/api_docs.py."""

    template_name = "api/swagger_ui.html"


urlpatterns = [
    path("healthz", observability.healthz, name="healthz"),
    path("readyz", observability.readyz, name="readyz"),
    path("metrics", observability.metrics, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Public only with HUB_API_DOCS_PUBLIC (off in production), see hub/api_docs.py; the schema view too.
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    # The chat API first: channels call it far more often than anything else, and URLs resolve in order.
    path("api/v1/", include("apps.chat.api.urls")),
    # The public web widget API (issue 17): widget keys and conversation tokens, CORS per channel.
    path("widget/v1/", include("apps.chat.api.widget_urls")),
    path("api/v1/", include("apps.tenants.api.urls")),
    path("api/v1/", include("apps.accounts.api.urls")),  # SSO setup (providers, domains, mappings), SCIM
    # SCIM 2.0 provisioning (issue 19): one base URL, the tenant comes from the bearer token.
    path("scim/v2/", include("apps.accounts.api.scim_urls")),
    path("api/v1/", include("apps.integrations.api.urls")),
    path("admin/", admin_site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("apps.accounts.urls")),  # /accounts/... and a member's unlock under /t/<slug>/
    path("", include("apps.accounts.sso_config_urls")),  # a tenant's SSO setup under /t/<slug>/sso/
    path("", include("apps.tenants.urls")),
    path("", include("apps.policies.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.integrations.urls")),
    path("", include("apps.knowledge.urls")),
    path("", include("apps.chat.urls")),
    path("", include("apps.console.urls")),
]
# --- Issue 21 (helpcenter): the public help center under /help/<tenant>/<handle>/ (no login) and its console
# settings form; custom domains get apps/helpcenter/host_urls.py instead (HelpCenterHostMiddleware).
urlpatterns += [path("", include("apps.helpcenter.urls"))]
# --- Issue 22 (siem): a tenant's SIEM destinations under /t/<slug>/siem/.
urlpatterns += [path("", include("apps.siem.urls"))]

# A dependency that is down answers 503 with Retry-After (issue 15), anything else a plain 500: never a trace.
handler500 = "apps.core.views.server_error"
# --- Issue 22 (auditapi): the audit REST API under /api/v1/tenants/<slug>/audit/ (apps/audit/api/).
urlpatterns += [path("api/v1/", include("apps.audit.api.urls"))]
# --- Issue 22 (dsrapi): the data-subject request API, /api/v1/tenants/<slug>/data-subject-requests/.
urlpatterns += [path("api/v1/", include("apps.policies.api.urls"))]
