"""Reading a field report's request: the JSON report and its photos and videos, every limit
checked before anything is stored (``api.reports_api`` stores).

``multipart/form-data`` with one part ``report`` (JSON) and parts ``media``, or
``application/json`` for a report without media. A part is read in chunks and refused as
soon as it passes its limit, so a too-large upload never sits whole in memory; the
declared content type must be allowed and match the bytes' signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec
from aiohttp import BodyPartReader, web

from alerts.field_reports import ReportRequest
from api.auth import http_error
from gridwatch.config import FieldConfig

MAX_JSON: Final = 64 * 1024
CHUNK: Final = 64 * 1024
_SIGNATURES: Final = {
    "image/jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "image/png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "video/mp4": lambda b: b[4:8] == b"ftyp",
}


@dataclass(frozen=True, slots=True)
class Upload:
    data: bytes
    content_type: str
    kind: str  # report_photo / report_video
    filename: str


def _decode(raw: bytes) -> ReportRequest:
    try:
        return msgspec.json.decode(raw, type=ReportRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise http_error(400, "bad_report", f"report: {exc}") from None


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    """The part's bytes, refused (413) as soon as they pass ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size > limit:
            raise http_error(413, "too_large", f"{what} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_kind(content_type: str, cfg: FieldConfig) -> tuple[str, int]:
    if content_type in cfg.photo_types:
        return "report_photo", cfg.max_photo_bytes
    if content_type in cfg.video_types:
        return "report_video", cfg.max_video_bytes
    allowed = ", ".join(sorted(cfg.photo_types | cfg.video_types))
    raise http_error(
        415, "unsupported_media_type", f"media of type {content_type!r}: allowed are {allowed}"
    )


async def read_report(request: web.Request, cfg: FieldConfig) -> tuple[ReportRequest, list[Upload]]:
    """The report and its media, fully read and checked (nothing is stored here)."""
    largest = max(cfg.max_photo_bytes, cfg.max_video_bytes)
    limit = cfg.max_files * largest + MAX_JSON + 64 * 1024
    if request.content_length is not None and request.content_length > limit:
        raise http_error(413, "too_large", f"the request is larger than {limit} bytes")
    if request.content_type == "application/json":
        raw = bytearray()
        while chunk := await request.content.read(CHUNK):
            raw += chunk
            if len(raw) > MAX_JSON:
                raise http_error(413, "too_large", f"a JSON report has at most {MAX_JSON} bytes")
        return _decode(bytes(raw)), []
    if request.content_type != "multipart/form-data":
        raise http_error(
            415,
            "unsupported_media_type",
            "send multipart/form-data (a 'report' part and 'media' parts) or application/json",
        )
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError) as exc:
        raise http_error(400, "bad_request", f"body is not valid multipart: {exc}") from None
    report: ReportRequest | None = None
    uploads: list[Upload] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise http_error(400, "bad_request", "nested multipart is not accepted")
        if part.name == "report":
            if report is not None:
                raise http_error(400, "bad_report", "give the 'report' part once")
            report = _decode(await _read_part(part, MAX_JSON, "the report part"))
        elif part.name == "media":
            if len(uploads) >= cfg.max_files:
                raise http_error(413, "too_many_files", f"at most {cfg.max_files} media files")
            declared = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            kind, most = _media_kind(declared, cfg)
            name = part.filename or f"media-{len(uploads) + 1}"
            data = await _read_part(part, most, f"media {name!r}")
            check = _SIGNATURES.get(declared)
            if not data or (check is not None and not check(data)):
                raise http_error(
                    415,
                    "unsupported_media_type",
                    f"media {name!r} is declared {declared} but its bytes are not",
                )
            uploads.append(Upload(data, declared, kind, name))
        else:
            raise http_error(
                400, "bad_request", f"unknown part {part.name!r} (parts: report, media)"
            )
    if report is None:
        raise http_error(400, "bad_report", "the 'report' part (JSON) is missing")
    return report, uploads
