"""Signed evidence archives: files plus a manifest with each file's sha256, signed like the audit export.

Other apps (data-subject access archives) build their zips here so there is one signing format to verify.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from apps.audit import signing
from apps.audit.chain import manifest_bytes


def signed_archive(
    *, files: Mapping[str, bytes], manifest: Mapping[str, Any]
) -> tuple[bytes, dict[str, Any]]:
    """Zip `files` with a `manifest.json` (the given fields, sha256 per file, Ed25519 signature).

    Returns the zip and the signed manifest. Verify with apps.audit.signing.verify(manifest_bytes(m), ...).
    """
    signed: dict[str, Any] = {
        **manifest,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
        "exported_at": timezone.now().isoformat(),
        "algorithm": "Ed25519",
        "public_key": signing.public_key_b64(),
    }
    signed["signature"] = signing.sign(manifest_bytes(signed))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in sorted(files.items()):
            zf.writestr(name, content)
        zf.writestr("manifest.json", json.dumps(signed, indent=2, sort_keys=True, default=str))
    return buffer.getvalue(), signed
