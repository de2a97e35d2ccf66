"""Settings split into base/dev/test/production; pick one with DJANGO_SETTINGS_MODULE."""
