"""The Django admin for platform operators, behind django-otp: only a session verified with a second
factor may enter. The default site object is reused (every app's registrations stay); only its class
changes to OTPAdminSite. Its sign-in form counts towards the same lockout as the console's."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django_otp.admin import OTPAdminSite

from apps.accounts.forms import AdminLoginForm
from apps.accounts.models import User

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
