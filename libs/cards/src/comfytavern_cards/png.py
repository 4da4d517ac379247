"""A PNG chunk walker for character cards that never decodes pixels.

Why not Pillow's ``im.text``: it decodes every pixel to reach text written after ``IDAT`` (where
SillyTavern writes cards), keeps the *last* chunk of a repeated keyword (SillyTavern takes the
first) and compares keywords case-sensitively. This walker reads 8-byte chunk headers, seeks past
everything that is not a wanted text chunk, checks every declared length against the bytes that
remain before reading anything, verifies the CRC of the text chunks it keeps, and bounds both each
chunk and the total decoded text. Random corruption ends in a :class:`CardError`, never in another
exception, a hang or a large allocation.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from comfytavern_cards.errors import CardTooLargeError, NoCardDataError, NotPngError, PngStructureError

__all__ = [
    "CARD_KEYWORDS",
    "PNG_SIGNATURE",
    "PngLimits",
    "TextChunk",
    "embed_text_chunks",
    "find_card_chunk",
    "is_png",
    "walk_text_chunks",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Keywords that carry a card, in order of preference (V3 first, as the V3 spec asks).
CARD_KEYWORDS: tuple[str, ...] = ("ccv3", "chara")

_TEXT_TYPES: dict[bytes, ChunkType] = {b"tEXt": "tEXt", b"zTXt": "zTXt", b"iTXt": "iTXt"}
_MAX_PNG_LENGTH = 2**31 - 1  # the PNG spec's limit for one chunk
_MAX_KEYWORD = 79
_HEADER = struct.Struct(">I4s")

ChunkType = Literal["tEXt", "zTXt", "iTXt"]


@dataclass(frozen=True)
class PngLimits:
    """Ceilings for untrusted PNGs.

    ``max_text_chunk_bytes`` bounds one wanted text chunk (stored and inflated size);
    ``max_text_bytes`` bounds all kept text together; ``max_chunks`` bounds the walk itself.
    """

    max_text_chunk_bytes: int = 16 * 1024 * 1024
    max_text_bytes: int = 32 * 1024 * 1024
    max_chunks: int = 200_000


DEFAULT_LIMITS = PngLimits()


@dataclass(frozen=True)
class TextChunk:
    """One decoded text chunk. ``tEXt``/``zTXt`` text is Latin-1 as the PNG spec says."""

    chunk_type: ChunkType
    keyword: str
    text: str
    offset: int


@dataclass
class WalkReport:
    """What the walker skipped and why (bad CRC, undecodable chunk), for error messages."""

    problems: list[str] = field(default_factory=list)


def is_png(head: bytes) -> bool:
    return head.startswith(PNG_SIGNATURE)


def _stream_size(stream: BinaryIO) -> int:
    here = stream.tell()
    size = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    return size


def _read_exact(stream: BinaryIO, n: int, offset: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise PngStructureError(f"file ends inside the chunk at offset {offset}")
    return data


def _inflate(data: bytes, limit: int, where: str) -> bytes | None:
    """Inflate at most ``limit`` bytes; ``None`` for a corrupt stream, raise when too large."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or inflater.unconsumed_tail:
        raise CardTooLargeError(f"{where} inflates to more than {limit} bytes")
    if not inflater.eof:
        return None
    return out


def _split_keyword(data: bytes) -> tuple[str, int] | None:
    nul = data.find(b"\x00", 0, _MAX_KEYWORD + 1)
    if nul < 1:
        return None
    return data[:nul].decode("latin-1"), nul


def _decode_text(
    chunk_type: ChunkType, data: bytes, limit: int, where: str, report: WalkReport
) -> tuple[str, str] | None:
    split = _split_keyword(data)
    if split is None:
        report.problems.append(f"{where}: missing or over-long keyword")
        return None
    keyword, nul = split
    rest = data[nul + 1 :]
    if chunk_type == "tEXt":
        if len(rest) > limit:
            raise CardTooLargeError(f"{where} holds more than {limit} bytes of text")
        return keyword, rest.decode("latin-1")
    if chunk_type == "zTXt":
        if not rest or rest[0] != 0:
            report.problems.append(f"{where}: unknown compression method")
            return None
        raw = _inflate(rest[1:], limit, where)
        if raw is None:
            report.problems.append(f"{where}: corrupt compressed text")
            return None
        return keyword, raw.decode("latin-1")
    # iTXt: flag, method, language tag NUL, translated keyword NUL, UTF-8 text
    if len(rest) < 2:
        report.problems.append(f"{where}: truncated iTXt header")
        return None
    flag, method = rest[0], rest[1]
    lang_end = rest.find(b"\x00", 2)
    trans_end = rest.find(b"\x00", lang_end + 1) if lang_end >= 0 else -1
    if trans_end < 0 or flag not in (0, 1) or (flag == 1 and method != 0):
        report.problems.append(f"{where}: malformed iTXt header")
        return None
    body = rest[trans_end + 1 :]
    if flag == 1:
        inflated = _inflate(body, limit, where)
        if inflated is None:
            report.problems.append(f"{where}: corrupt compressed text")
            return None
        body = inflated
    elif len(body) > limit:
        raise CardTooLargeError(f"{where} holds more than {limit} bytes of text")
    try:
        return keyword, body.decode("utf-8")
    except UnicodeDecodeError:
        report.problems.append(f"{where}: iTXt text is not valid UTF-8")
        return None


def walk_text_chunks(
    stream: BinaryIO,
    *,
    keywords: Collection[str] | None = None,
    limits: PngLimits = DEFAULT_LIMITS,
    report: WalkReport | None = None,
) -> Iterator[TextChunk]:
    """Yield the text chunks of a PNG in file order, without touching image data.

    ``keywords`` (lower-case) restricts which chunks are read at all: others are skipped by
    offset, so a 60 MB asset chunk costs one seek. Raises :class:`NotPngError`,
    :class:`PngStructureError` or :class:`CardTooLargeError`; a wanted chunk with a bad CRC or
    undecodable content is skipped and noted in ``report``.
    """
    report = report if report is not None else WalkReport()
    wanted = {k.lower() for k in keywords} if keywords is not None else None
    size = _stream_size(stream)
    if _read_exact_or_none(stream, len(PNG_SIGNATURE)) != PNG_SIGNATURE:
        raise NotPngError("not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    kept = 0
    for index in range(limits.max_chunks):
        if pos == size:
            raise PngStructureError("the file ends without an IEND chunk")
        if size - pos < 12:
            raise PngStructureError(f"truncated chunk header at offset {pos}")
        stream.seek(pos)
        length, ctype = _HEADER.unpack(_read_exact(stream, 8, pos))
        if length > _MAX_PNG_LENGTH or length > size - pos - 12:
            raise PngStructureError(
                f"chunk at offset {pos} declares {length} bytes but only {max(size - pos - 12, 0)} remain"
            )
        if not all(65 <= b <= 90 or 97 <= b <= 122 for b in ctype):
            raise PngStructureError(f"invalid chunk type at offset {pos}")
        if index == 0 and ctype != b"IHDR":
            raise PngStructureError("the first chunk is not IHDR")
        if ctype == b"IEND":
            return
        next_pos = pos + 12 + length
        chunk_type = _TEXT_TYPES.get(ctype)
        if chunk_type is not None:
            chunk = _read_text_chunk(stream, chunk_type, ctype, length, pos, wanted, limits, kept, report)
            if chunk is not None:
                kept += len(chunk.text)
                yield chunk
        pos = next_pos
    raise PngStructureError(f"more than {limits.max_chunks} chunks")


def _read_exact_or_none(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def _read_text_chunk(
    stream: BinaryIO,
    chunk_type: ChunkType,
    ctype: bytes,
    length: int,
    pos: int,
    wanted: set[str] | None,
    limits: PngLimits,
    kept: int,
    report: WalkReport,
) -> TextChunk | None:
    head = _read_exact(stream, min(length, _MAX_KEYWORD + 1), pos)
    split = _split_keyword(head)
    where = f"{chunk_type} chunk at offset {pos}"
    if split is None:
        report.problems.append(f"{where}: missing or over-long keyword")
        return None
    if wanted is not None and split[0].lower() not in wanted:
        return None
    where = f"{chunk_type} chunk {split[0]!r} at offset {pos}"
    if length > limits.max_text_chunk_bytes:
        raise CardTooLargeError(f"{where} is {length} bytes (limit {limits.max_text_chunk_bytes})")
    data = head + _read_exact(stream, length - len(head), pos)
    (crc,) = struct.unpack(">I", _read_exact(stream, 4, pos))
    if zlib.crc32(ctype + data) != crc:
        report.problems.append(f"{where}: bad CRC (corrupted chunk)")
        return None
    budget = limits.max_text_bytes - kept
    if budget <= 0:
        raise CardTooLargeError(f"text chunks exceed {limits.max_text_bytes} bytes in total")
    decoded = _decode_text(chunk_type, data, min(limits.max_text_chunk_bytes, budget), where, report)
    if decoded is None:
        return None
    return TextChunk(chunk_type, decoded[0], decoded[1], pos)


def find_card_chunk(
    stream: BinaryIO, *, limits: PngLimits = DEFAULT_LIMITS
) -> TextChunk:
    """The first ``ccv3`` chunk (any case), else the first ``chara``; as SillyTavern reads cards.

    A file damaged *after* a card chunk still yields that chunk. Raises :class:`NoCardDataError`
    (naming skipped chunks) when there is none.
    """
    report = WalkReport()
    first: dict[str, TextChunk] = {}
    try:
        for chunk in walk_text_chunks(stream, keywords=CARD_KEYWORDS, limits=limits, report=report):
            key = chunk.keyword.lower()
            first.setdefault(key, chunk)
            if key == CARD_KEYWORDS[0]:
                break
    except PngStructureError:
        if not first:
            raise
    for key in CARD_KEYWORDS:
        if key in first:
            return first[key]
    detail = f" ({'; '.join(report.problems[:5])})" if report.problems else ""
    raise NoCardDataError(f"the PNG has no character card data (no readable ccv3 or chara chunk){detail}")


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def embed_text_chunks(png: bytes, entries: Sequence[tuple[str, str]]) -> bytes:
    """Return ``png`` with ``entries`` written as ``tEXt`` chunks just before ``IEND``.

    Every existing text chunk (tEXt/zTXt/iTXt) whose keyword matches one of the new keywords,
    case-insensitively, is removed first, as SillyTavern's writer does. Other chunks are copied
    byte for byte; pixels are never decoded. Values must be Latin-1 (cards are base64).
    """
    if not is_png(png):
        raise NotPngError("not a PNG file (bad signature)")
    replace = {keyword.lower() for keyword, _ in entries}
    out = [PNG_SIGNATURE]
    pos = len(PNG_SIGNATURE)
    size = len(png)
    while True:
        if size - pos < 12:
            raise PngStructureError("the file ends without an IEND chunk")
        length, ctype = _HEADER.unpack_from(png, pos)
        end = pos + 12 + length
        if length > _MAX_PNG_LENGTH or end > size:
            raise PngStructureError(f"chunk at offset {pos} declares {length} bytes but fewer remain")
        if ctype == b"IEND":
            for keyword, value in entries:
                out.append(_chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + value.encode("latin-1")))
            out.append(png[pos:end])
            return b"".join(out)
        if ctype in _TEXT_TYPES:
            split = _split_keyword(png[pos + 8 : pos + 8 + min(length, _MAX_KEYWORD + 1)])
            if split is not None and split[0].lower() in replace:
                pos = end
                continue
        out.append(png[pos:end])
        pos = end
