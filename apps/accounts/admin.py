"""The Django admin for platform operators, behind django-otp: only a session verified with a second
factor may enter. The default site object is reused (every app's registrations stay); only its class
changes to OTPAdminSite. Its sign-in form counts towards the same lockout as the console's."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django_otp.admin import OTPAdminSite

from apps.accounts import services
from apps.accounts.forms import AdminLoginForm
from apps.accounts.models import BackupCodeDevice, TOTPDevice, User

admin.site.__class__ = OTPAdminSite
admin_site = admin.site
admin_site.login_form = AdminLoginForm


@admin.register(User)
class HubUserAdmin(UserAdmin):
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Preferences", {"fields": ("language", "time_zone")}),
    )
    list_display = ("username", "email", "is_staff", "is_active", "language")


class SecondFactorAdmin(admin.ModelAdmin):
    """Operators see and remove a user's second factors (to reset a lost phone); never their secrets, and
    never add one here: enrolment happens in the console, where only the user sees the seed."""

    list_display = ("user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    list_filter = ("confirmed",)
    search_fields = ("user__username", "user__email", "name")
    raw_id_fields = ("user",)
    fields = ("user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = ("user", "created_at", "last_used_at", "throttling_failure_count")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def delete_model(self, request: Any, obj: Any) -> None:
        """Deleting one factor resets them all: a TOTP device without its backup codes (or the reverse) would
        be a half-reset; audited."""
        services.two_factor_reset_by_operator(user=obj.user, actor=request.user, request=request)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for user in {device.user for device in queryset.select_related("user")}:
            services.two_factor_reset_by_operator(user=user, actor=request.user, request=request)


admin.site.register(TOTPDevice, SecondFactorAdmin)
admin.site.register(BackupCodeDevice, SecondFactorAdmin)
