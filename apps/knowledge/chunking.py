"""Heading-aware Markdown chunking and the text search configuration of each language.

Each chunk keeps the article title and its heading path, because a paragraph like "Within 30 days." means
nothing without "Returns / Deadline" above it — for the embedding, for full-text search and for citations.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
MAX_CHARS = 900  # a few paragraphs: long enough for context, short enough to stay on one topic

#: PostgreSQL text search configuration per base language; anything else uses `simple`.
TS_CONFIGS = {
    "da": "danish",
    "de": "german",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ru": "russian",
    "sv": "swedish",
}
# Scripts written without spaces: indexed as overlapping character bigrams under `simple`.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f]+")


@dataclass(frozen=True)
class ChunkText:
    heading_path: tuple[str, ...]
    text: str
    position: int


def base_language(locale: str) -> str:
    return locale.split("-", 1)[0].lower()


def ts_config(locale: str) -> str:
    return TS_CONFIGS.get(base_language(locale), "simple")


def fts_text(text: str) -> str:
    """Text as the full-text index sees it: CJK runs become bigrams (PostgreSQL has no CJK parser)."""

    def bigrams(match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) == 1:
            return f" {run} "
        return " " + " ".join(run[i : i + 2] for i in range(len(run) - 1)) + " "

    return CJK.sub(bigrams, text)


def _split_long(text: str) -> list[str]:
    if len(text) <= MAX_CHARS:
        return [text]
    pieces: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        candidate = f"{current}\n\n{paragraph}" if current else paragraph
        if len(candidate) <= MAX_CHARS or not current:
            current = candidate
        else:
            pieces.append(current)
            current = paragraph
    if current:
        pieces.append(current)
    # A single paragraph longer than the limit is cut at sentence ends.
    result: list[str] = []
    for piece in pieces:
        while len(piece) > MAX_CHARS * 1.5:
            cut = max(piece.rfind(". ", 0, MAX_CHARS), piece.rfind("。", 0, MAX_CHARS))
            cut = cut + 1 if cut > MAX_CHARS // 3 else MAX_CHARS
            result.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        result.append(piece)
    return [p for p in result if p]


def chunk_markdown(body: str) -> list[ChunkText]:
    """Split Markdown into sections under their heading path; split long sections at paragraphs."""
    sections: list[tuple[tuple[str, ...], list[str]]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(lines).strip()
        if text:
            sections.append((tuple(title for _, title in path), [text]))
        lines.clear()

    for line in body.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, match.group(2).strip()))
        else:
            lines.append(line)
    flush()
    chunks: list[ChunkText] = []
    for heading_path, (text,) in sections:
        for piece in _split_long(text):
            chunks.append(ChunkText(heading_path=heading_path, text=piece, position=len(chunks)))
    return chunks


def chunk_hash(*, translation_id: int, title: str, heading_path: tuple[str, ...], text: str) -> str:
    """A stable id for a chunk's content: unchanged text keeps its id (and its vector) across publishes."""
    material = "\x1f".join([str(translation_id), title, *heading_path, "\x1e", text])
    return hashlib.sha256(material.encode()).hexdigest()


def embedding_input(*, title: str, heading_path: tuple[str, ...], text: str) -> str:
    return " / ".join([title, *heading_path]) + "\n" + text
