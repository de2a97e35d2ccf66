"""The silo database router: control models to `default`, region models to the tenant's home region."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models

from apps.core.context import current_tenant
from apps.core.models import CONTROL, REGION, silo_of

ALL = "all"


def is_region_alias(alias: str) -> bool:
    return alias.startswith("region_")


class SiloRouter:
    """Route by the silo a model declares (`hub_silo`); refuse region queries without a tenant context."""

    def _db(self, model: type[models.Model]) -> str:
        if silo_of(model) == REGION:
            return current_tenant().db_alias
        return "default"

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str:
        return self._db(model)

    def db_for_write(self, model: type[models.Model], **hints: Any) -> str:
        return self._db(model)

    def allow_relation(self, obj1: models.Model, obj2: models.Model, **hints: Any) -> bool:
        return silo_of(type(obj1)) == silo_of(type(obj2))

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        silo = hints.get("silo")
        if silo is None and model_name is not None:
            try:
                silo = silo_of(apps.get_model(app_label, model_name))
            except LookupError:
                # A model deleted later in history: its migrations must pass hints={"silo": ...}.
                silo = CONTROL
        if silo == ALL:
            return True
        if silo == REGION:
            return is_region_alias(db)
        return db == "default"
