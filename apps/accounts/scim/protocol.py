"""SCIM request bodies in, resources out: Users and Groups as Okta and Microsoft Entra ID send them.

Lenient where the two clients are known to differ from RFC 7644 (and tested with their documented bodies):
op names in any case ("Replace" from Entra), booleans as strings ("False", Entra), a path-less `replace`
whose value is an object (Okta's deactivation), `emails[type eq "work"].value` and `name.givenName` paths,
members removed by a `members[value eq "id"]` path or by a value list. Strict where it matters: the body
must be a JSON object, values must have the right type, a path we do not know is a 400 invalidPath (the
attributes we accept but do not keep, such as title or phone numbers, are ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from apps.accounts.scim.errors import invalid_path, invalid_syntax, invalid_value
from apps.accounts.scim.filters import GROUP_SCHEMA, USER_SCHEMA

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_OPERATIONS = 1000
MAX_MEMBERS = 10_000

# User attributes a client may send that we accept without keeping (RFC 7643 §4.1); anything in an extension
# schema too (Entra's enterprise extension, custom ones).
_IGNORED_USER_ATTRS = frozenset(
    {
        "displayname", "nickname", "profileurl", "title", "usertype", "preferredlanguage", "locale",
        "timezone", "password", "phonenumbers", "ims", "photos", "addresses", "groups", "entitlements",
        "roles", "x509certificates", "schemas", "meta", "id", "name.formatted", "name.middlename",
        "name.honorificprefix", "name.honorificsuffix",
    }
)  # fmt: skip
_MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+"([^"]{1,100})"\s*\]$', re.IGNORECASE)
_EMAIL_PATH = re.compile(r'^emails(\[\s*(type\s+eq\s+"work"|primary\s+eq\s+true)\s*\])?(\.value)?$', re.I)


@dataclass(frozen=True)
class UserData:
    """What we keep of a SCIM User."""

    user_name: str
    email: str
    external_id: str = ""
    given_name: str = ""
    family_name: str = ""
    active: bool = True


@dataclass(frozen=True)
class GroupData:
    display_name: str
    external_id: str = ""
    members: tuple[str, ...] | None = None  # None: leave as is (PUT without members keeps them? no: see api)


@dataclass
class GroupChange:
    """A group PATCH, reduced to what it changes."""

    display_name: str | None = None
    external_id: str | None = None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    replace_members: list[str] | None = None
    remove_all: bool = False


# --- values -------------------------------------------------------------------------------------------------
def _text(value: Any, name: str, *, max_length: int = 255, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise invalid_value(f"{name} must be a string.")
    value = value.strip()
    if "\x00" in value:
        raise invalid_value(f"{name} must not contain NUL characters.")
    if len(value) > max_length:
        raise invalid_value(f"{name} is too long.")
    if required and not value:
        raise invalid_value(f"{name} is required.")
    return value


def _bool(value: Any, name: str) -> bool:
    """A boolean, also as the strings "True"/"False" Entra ID sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid_value(f"{name} must be true or false.")


def _email_from_list(emails: Any) -> str:
    """The primary address, else the work one, else the first (RFC 7643 emails are a multi-valued list)."""
    if emails is None:
        return ""
    if not isinstance(emails, list) or not all(isinstance(e, dict) for e in emails):
        raise invalid_value("emails must be a list of objects.")
    if len(emails) > 20:
        raise invalid_value("Too many emails.")
    chosen = next((e for e in emails if e.get("primary") in (True, "true", "True")), None)
    chosen = chosen or next((e for e in emails if str(e.get("type", "")).lower() == "work"), None)
    chosen = chosen or (emails[0] if emails else None)
    return _text(chosen.get("value"), "emails.value", max_length=254) if chosen else ""


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object.")
    return body


# --- users -------------------------------------------------------------------------------------------------
def user_data_from_body(body: Any, *, current: UserData | None = None) -> UserData:
    """A User from a POST or PUT body. `active` missing: true for a new user, unchanged on PUT."""
    body = _require_object(body)
    name = body.get("name") or {}
    if not isinstance(name, dict):
        raise invalid_value("name must be an object.")
    user_name = _text(body.get("userName"), "userName", required=True)
    email = _email_from_list(body.get("emails")) or (user_name if "@" in user_name else "")
    if not email and current is not None:  # a PUT without an address keeps it (we need one)
        email = current.email
    active = _bool(body["active"], "active") if "active" in body else (current.active if current else True)
    return UserData(
        user_name=user_name,
        email=email,
        external_id=_text(body.get("externalId"), "externalId"),
        given_name=_text(name.get("givenName"), "name.givenName", max_length=150),
        family_name=_text(name.get("familyName"), "name.familyName", max_length=150),
        active=active,
    )


def _operations(body: Any) -> list[tuple[str, str, Any, bool]]:
    """(op, path, value, has_value) of a PatchOp body; op lower-cased (Entra capitalises)."""
    body = _require_object(body)
    ops = body.get("Operations", body.get("operations"))
    if not isinstance(ops, list) or not ops:
        raise invalid_syntax("Operations must be a non-empty list.")
    if len(ops) > MAX_OPERATIONS:
        raise invalid_syntax("Too many operations.")
    result = []
    for raw in ops:
        if not isinstance(raw, dict):
            raise invalid_syntax("Each operation must be an object.")
        op = str(raw.get("op", "")).strip().lower()
        if op not in ("add", "replace", "remove"):
            raise invalid_syntax("op must be add, replace or remove.")
        path = raw.get("path") or ""
        if not isinstance(path, str) or len(path) > 500:
            raise invalid_path("path must be a string.")
        result.append((op, path.strip(), raw.get("value"), "value" in raw))
    return result


def _strip_schema(path: str, schema: str) -> str:
    prefix = schema.lower() + ":"
    return path[len(prefix) :] if path.lower().startswith(prefix) else path


def _user_set(data: UserData, path: str, value: Any, *, remove: bool) -> UserData:
    """Apply one attribute of a User PATCH (`path` relative to the core schema)."""
    path = _strip_schema(path, USER_SCHEMA)
    key = path.lower()
    if (
        key.startswith("urn:")
        or key in _IGNORED_USER_ATTRS
        or re.split(r"[\[.]", key)[0] in _IGNORED_USER_ATTRS
    ):
        return data  # an extension attribute or one we do not keep (phoneNumbers[type eq "work"].value too)
    if key == "active":
        if remove:
            raise invalid_value("active cannot be removed.")
        return replace(data, active=_bool(value, "active"))
    if key == "username":
        if remove:
            raise invalid_value("userName cannot be removed.")
        return replace(data, user_name=_text(value, "userName", required=True))
    if key == "externalid":
        return replace(data, external_id="" if remove else _text(value, "externalId"))
    if key == "name.givenname":
        return replace(data, given_name="" if remove else _text(value, "name.givenName", max_length=150))
    if key == "name.familyname":
        return replace(data, family_name="" if remove else _text(value, "name.familyName", max_length=150))
    if key == "name":
        if remove:
            return replace(data, given_name="", family_name="")
        if not isinstance(value, dict):
            raise invalid_value("name must be an object.")
        for sub, sub_value in value.items():
            data = _user_set(data, f"name.{sub}", sub_value, remove=False)
        return data
    if _EMAIL_PATH.match(path):
        if remove:
            raise invalid_value("The e-mail address cannot be removed.")
        if isinstance(value, list):
            email = _email_from_list(value)
        elif isinstance(value, dict):
            email = _text(value.get("value"), "emails.value", max_length=254)
        else:
            email = _text(value, "emails.value", max_length=254)
        return replace(data, email=email) if email else data
    raise invalid_path("Unsupported attribute path.")


def user_data_patched(current: UserData, body: Any) -> UserData:
    """Apply a User PatchOp body to `current` (nothing is written)."""
    data = current
    for op, path, value, _has_value in _operations(body):
        if not path:
            if op == "remove":
                raise invalid_path("remove needs a path.")
            if not isinstance(value, dict):
                raise invalid_value("Without a path, value must be an object.")
            for key, sub_value in value.items():  # Okta: {"op":"replace","value":{"active":false}}
                if isinstance(key, str) and key.lower() == ENTERPRISE_SCHEMA.lower():
                    continue
                data = _user_set(data, str(key), sub_value, remove=False)
        else:
            data = _user_set(data, path, value, remove=op == "remove")
    return data


# --- groups ------------------------------------------------------------------------------------------------
def _member_ids(value: Any) -> list[str]:
    """The user ids of a `members` value: [{"value": id, ...}, ...] (a single object is accepted too)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise invalid_value("members must be a list of objects with a value.")
    if len(value) > MAX_MEMBERS:
        raise invalid_value("Too many members.")
    return [_text(m.get("value"), "members.value", max_length=100, required=True) for m in value]


def group_data_from_body(body: Any) -> GroupData:
    body = _require_object(body)
    members = body.get("members")
    return GroupData(
        display_name=_text(body.get("displayName"), "displayName", required=True),
        external_id=_text(body.get("externalId"), "externalId"),
        members=tuple(_member_ids(members)) if members is not None else None,
    )


def group_change(body: Any) -> GroupChange:
    """A Group PatchOp body as a GroupChange (Okta's and Entra's member and rename shapes)."""
    change = GroupChange()
    for op, path, value, has_value in _operations(body):
        target = _strip_schema(path, GROUP_SCHEMA)
        key = target.lower()
        single = _MEMBER_FILTER.match(target)
        if single:  # remove (or replace) one member: members[value eq "id"] (Okta, Entra)
            if op != "remove":
                raise invalid_path("Only remove may address one member by filter.")
            change.remove.append(single.group(1))
        elif key == "members":
            if op == "remove" and not has_value:
                change.remove_all, change.add, change.remove = True, [], []
                change.replace_members = None
            elif op == "remove":
                change.remove.extend(_member_ids(value))
            elif op == "add":
                change.add.extend(_member_ids(value))
            else:
                change.replace_members, change.add, change.remove = _member_ids(value), [], []
        elif key in ("displayname", "externalid"):
            if op == "remove":
                if key == "displayname":
                    raise invalid_value("displayName cannot be removed.")
                change.external_id = ""
            elif key == "displayname":
                change.display_name = _text(value, "displayName", required=True)
            else:
                change.external_id = _text(value, "externalId")
        elif not path and op in ("add", "replace") and isinstance(value, dict):
            # Okta: {"op":"replace","value":{"id":"...","displayName":"..."}}; members in the object too.
            for sub, sub_value in value.items():
                sub_key = str(sub).lower()
                if sub_key == "displayname":
                    change.display_name = _text(sub_value, "displayName", required=True)
                elif sub_key == "externalid":
                    change.external_id = _text(sub_value, "externalId")
                elif sub_key == "members":
                    if op == "add":
                        change.add.extend(_member_ids(sub_value))
                    else:
                        change.replace_members = _member_ids(sub_value)
                elif sub_key not in ("id", "schemas", "meta"):
                    raise invalid_path("Unsupported attribute path.")
        else:
            raise invalid_path("Unsupported attribute path.")
    return change


# --- resources out -----------------------------------------------------------------------------------------
def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def user_resource(scim_user: Any, *, base: str) -> dict[str, Any]:
    user = scim_user.user
    given, family = user.first_name, user.last_name
    formatted = " ".join(p for p in (given, family) if p)
    groups = [
        {"value": str(g.scim_id), "display": g.display_name, "$ref": f"{base}/Groups/{g.scim_id}"}
        for g in scim_user.groups.all()
    ]
    resource: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "id": str(scim_user.scim_id),
        "userName": scim_user.user_name or user.email,
        "name": {"givenName": given, "familyName": family, "formatted": formatted},
        "displayName": formatted or scim_user.user_name or user.email,
        "emails": [{"value": user.email, "type": "work", "primary": True}],
        "active": scim_user.active,
        "groups": groups,
        "meta": {
            "resourceType": "User",
            "created": _iso(scim_user.created_at),
            "lastModified": _iso(max(scim_user.updated_at, scim_user.created_at)),
            "location": f"{base}/Users/{scim_user.scim_id}",
        },
    }
    if scim_user.external_id:
        resource["externalId"] = scim_user.external_id
    return resource


def group_resource(group: Any, *, base: str, members: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": str(group.scim_id),
        "displayName": group.display_name,
        "meta": {
            "resourceType": "Group",
            "created": _iso(group.created_at),
            "lastModified": _iso(group.updated_at),
            "location": f"{base}/Groups/{group.scim_id}",
        },
    }
    if group.external_id:
        resource["externalId"] = group.external_id
    if members:
        resource["members"] = [
            {
                "value": str(m.scim_id),
                "display": m.user_name or m.user.email,
                "$ref": f"{base}/Users/{m.scim_id}",
            }
            for m in group.members.all()
        ]
    return resource


def project(resource: dict[str, Any], *, attributes: str, excluded: str) -> dict[str, Any]:
    """Apply `attributes` / `excludedAttributes` (top-level names; id, schemas and meta always stay)."""
    keep = {"id", "schemas", "meta"}
    if attributes:
        wanted = {a.strip().split(".")[0].lower() for a in attributes.split(",")} | keep
        return {k: v for k, v in resource.items() if k.lower() in wanted}
    if excluded:
        dropped = {a.strip().split(".")[0].lower() for a in excluded.split(",")} - keep
        return {k: v for k, v in resource.items() if k.lower() not in dropped}
    return resource


def list_response(resources: list[dict[str, Any]], *, total: int, start: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
