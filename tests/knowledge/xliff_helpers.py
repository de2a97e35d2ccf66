"""Texts and file helpers the XLIFF exchange tests share (tests/knowledge/test_xliff*.py)."""

from __future__ import annotations

from typing import Any

from translate.storage.xliff import xlifffile

from apps.core.context import tenant_context
from apps.knowledge.models import KnowledgeBase, Translation
from apps.knowledge.services import translation_publish, translation_save, translation_submit
from apps.tenants.models import Tenant

# Markdown a round trip must keep byte for byte: a code block with markup-like text, links, lists, a table.
RETURNS_EN = (
    "# Returns\n\nYou can return items within **30 days**.\n\n"
    "1. Open [your orders](https://shop.example.com/orders?tab=open&sort=new).\n"
    "2. Choose *Return*.\n\n"
    "- Keep the label\n- Drop it at any `<b>store</b>` point\n\n"
    "```python\nif days < 30 and item != 'used':\n    refund(item)  # <ok> & done\n```\n\n"
    "| Item | Days |\n|------|------|\n| Sofa | 14 |\n"
)
RETURNS_JA = (
    "# 返品\n\n商品は**30日以内**に返品できます。\n\n"
    "1. [ご注文](https://shop.example.com/orders?tab=open&sort=new)を開きます。\n"
    "2. *返品*を選びます。\n\n"
    "- ラベルを保管\n- 店舗 `<b>store</b>` で渡す\n\n"
    "```python\nif days < 30 and item != 'used':\n    refund(item)  # <ok> & done\n```\n\n"
    "| 商品 | 日数 |\n|------|------|\n| ソファ | 14 |\n"
)
SHIPPING_EN = "Parcels arrive in 3 days.\n\nSee [tracking](https://track.example.com/)."


def publish_text(
    tenant: Tenant,
    kb: KnowledgeBase,
    *,
    key: str,
    locale: str,
    author: Any,
    reviewer: Any,
    title: str,
    body: str,
    phrasings: list[str] | None = None,
    region: str = "",
) -> Translation:
    """Save, submit and approve (four eyes) one text."""
    with tenant_context(tenant):
        text = translation_save(
            kb=kb,
            key=key,
            locale=locale,
            region=region,
            title=title,
            body=body,
            phrasings=phrasings,
            author=author,
        )
        translation_submit(translation=text, actor=author)
        return translation_publish(translation=text, actor=reviewer)


def published_source(tenant: Tenant, kb: KnowledgeBase, author: Any, reviewer: Any) -> dict[str, Translation]:
    """English: returns (Markdown, two phrasings) and shipping, published; German: returns published."""
    return {
        "returns": publish_text(
            tenant,
            kb,
            key="returns",
            locale="en",
            author=author,
            reviewer=reviewer,
            title="Returns",
            body=RETURNS_EN,
            phrasings=["how do I send something back", "refund for a sofa"],
        ),
        "shipping": publish_text(
            tenant,
            kb,
            key="shipping",
            locale="en",
            author=author,
            reviewer=reviewer,
            title="Shipping",
            body=SHIPPING_EN,
        ),
        "returns-de": publish_text(
            tenant,
            kb,
            key="returns",
            locale="de",
            author=author,
            reviewer=reviewer,
            title="Rückgabe",
            body="# Rückgabe\n\nInnerhalb von 30 Tagen.",
            phrasings=["wie schicke ich etwas zurück"],
        ),
    }


def units(data: bytes) -> dict[str, Any]:
    """The trans-units of an exported file by id (translate-toolkit, as a CAT tool would read it)."""
    store = xlifffile.parsestring(data)
    return {unit.xmlelement.get("id"): unit for unit in store.units}


def translate(data: bytes, targets: dict[str, str]) -> bytes:
    """Fill targets of an exported file with translate-toolkit and write it back, as a CAT tool would."""
    store = xlifffile.parsestring(data)
    for unit in store.units:
        if unit.xmlelement.get("id") in targets:
            unit.target = targets[unit.xmlelement.get("id")]
    return bytes(store)
