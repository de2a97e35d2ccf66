"""Django admin (operators only, behind OTPAdminSite) for the control-silo models of this app.

Region-silo models are not registered: the admin has no tenant context, and the console is the place
where tenant data is managed.
"""

from django.contrib import admin

from apps.tenants.models import Invitation, ManagementToken, Membership, Region, Tenant


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "is_active")


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "home_region", "default_locale", "is_active", "require_2fa")
    list_filter = ("home_region", "is_active")
    search_fields = ("name", "slug")
    readonly_fields = ("home_region",)  # fixed once created: moving a tenant is a data migration


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role")
    list_filter = ("role", "tenant")
    search_fields = ("user__username", "user__email")
    list_select_related = ("user", "tenant")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "tenant", "role", "expires_at", "accepted_at", "revoked_at")
    list_select_related = ("tenant",)


@admin.register(ManagementToken)
class ManagementTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "tenant", "user", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = ("prefix", "token_hash", "last_used_at")
    list_select_related = ("tenant", "user")
