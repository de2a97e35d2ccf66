"""factory_boy factories shared by the test suite. Writes go through services, as in production."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from apps.tenants.models import Tenant
from apps.tenants.services import region_sync, tenant_create


class TenantFactory(factory.Factory[Tenant]):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")
    home_region = factory.LazyFunction(lambda: next(r for r in region_sync() if r.code == "eu"))
    default_locale = "en"
    enabled_locales = factory.LazyFunction(lambda: ["en", "de"])

    @classmethod
    def _create(cls, model_class: type[Tenant], *args: Any, **kwargs: Any) -> Tenant:
        return tenant_create(**kwargs)


class UserFactory(factory.django.DjangoModelFactory[Any]):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("correct-horse-battery-9")
