"""Reading an uploaded image from a request body: a form upload (multipart/form-data) or a raw image/* body.

The upload endpoint is the service's hot path, so it does not go through the general form machinery
(which spools every part to a temporary file object and calls back per parsed header byte): an image
upload is one small part, found with a few ``bytes.find`` calls on the body read under a size limit.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fastapi import HTTPException, Request

# the accepted image types, and the PIL parser of each: only these parsers ever read an upload, so what an
# image declares is not trusted (a TIFF sent as image/png is refused); the JPEG parser also reads MPO, a
# camera's JPEG with a preview
IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
                 "image/bmp": "BMP"}
IMAGE_TYPES = frozenset(IMAGE_FORMATS)
PARSERS = tuple(sorted(IMAGE_FORMATS.values()))
# how each parser's data begins: data that begins so but does not parse is a broken image (400), data that
# begins otherwise is in a format not accepted (415), told apart without letting any other parser read it
SIGNATURES = {"PNG": re.compile(rb"\x89PNG\r\n\x1a\n"), "JPEG": re.compile(rb"\xff\xd8\xff"),
              "GIF": re.compile(rb"GIF8[79]a"), "WEBP": re.compile(rb"RIFF....WEBP", re.DOTALL),
              "BMP": re.compile(rb"BM")}
RAW_UPLOAD = "the uploaded image"
FORM_OVERHEAD = 16 * 1024  # room for the multipart headers and boundaries around the image
_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BOUNDARY = re.compile(r'(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)

# the schema FastAPI would have generated for `image: UploadFile = File(...)`, plus the raw-body form
OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "The image file."}}}},
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
}}}


def claimed_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` begins with, if any."""
    return next((name for name, signature in SIGNATURES.items() if signature.match(data)), None)


def _type_list() -> str:
    return ", ".join(sorted(IMAGE_TYPES))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the request is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the request is larger than the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class Upload(NamedTuple):
    """An uploaded image's bytes, and how to call it in an error message (its file name when it has one)."""

    data: bytes
    what: str = RAW_UPLOAD


def upload_name(filename: str | None) -> str:
    """How an error message calls an uploaded file: by its name (shortened, control characters escaped)."""
    if not filename:
        return RAW_UPLOAD
    try:  # the headers were read as Latin-1; browsers send file names in UTF-8
        filename = filename.encode("latin-1").decode("utf-8")
    except UnicodeError:
        pass
    if len(filename) > 80:
        filename = filename[:77] + "..."
    return f"{RAW_UPLOAD} {filename!r}"


async def read_upload(request: Request, max_bytes: int, field: str = "image") -> Upload:
    """The image of a form upload (``field``) or of a raw image/* body, checked for content type."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media in IMAGE_TYPES:
        return Upload(await read_body(request, max_bytes + 1))  # one byte over: the image check reports the size
    if media != "multipart/form-data":
        raise HTTPException(415, f"send the image as multipart/form-data (field {field!r}) or as a body of an "
                                 f"image type ({_type_list()}), not {media or 'no content type'!r}")
    m = _BOUNDARY.search(ctype)
    if not m:
        raise HTTPException(400, "the multipart/form-data content type names no boundary")
    body = await read_body(request, max_bytes + FORM_OVERHEAD)
    data, part_type, filename = find_form_file(body, (m.group(1) or m.group(2)).encode("latin-1"), field)
    what = upload_name(filename)
    if part_type not in IMAGE_TYPES:
        declared = f"content type {part_type!r}" if part_type else "no content type"
        raise HTTPException(415, f"{what} has {declared}, not an accepted image type ({_type_list()})")
    return Upload(data, what)


def find_form_file(body: bytes, boundary: bytes, field: str) -> tuple[bytes, str | None, str | None]:
    """The content, content type and file name of the form part named ``field`` (RFC 7578)."""
    delim = b"--" + boundary
    pos = body.find(delim)
    if pos < 0:
        raise HTTPException(400, "the form data does not contain its boundary")
    pos += len(delim)
    while not body.startswith(b"--", pos):  # "--boundary--" closes the form
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            break
        pos = eol + 2
        if body.startswith(b"\r\n", pos):  # a part without headers
            head, start = "", pos + 2
        else:
            end = body.find(b"\r\n\r\n", pos)
            if end < 0:
                raise HTTPException(400, "a form part's headers are cut short")
            head, start = body[pos:end].decode("latin-1"), end + 4
        stop = body.find(b"\r\n" + delim, start)
        if stop < 0:
            raise HTTPException(400, "the form data is cut short (no closing boundary)")
        headers = {}
        for line in head.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        m = _NAME.search(disposition)
        if m and (m.group(1) if m.group(1) is not None else m.group(2)) == field:
            part_type = headers.get("content-type")
            f = _FILENAME.search(disposition)
            return (body[start:stop], part_type.split(";", 1)[0].strip().lower() if part_type else None,
                    (f.group(1) if f.group(1) is not None else f.group(2)) if f else None)
        pos = stop + 2 + len(delim)
    raise HTTPException(422, f"malformed request — the form has no {field!r} file field")
