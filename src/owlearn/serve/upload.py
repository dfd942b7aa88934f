"""Reading an uploaded image from a request body: a form upload (multipart/form-data) or a raw image/* body.

The upload endpoint is the service's hot path, so it does not go through the general form machinery
(which spools every part to a temporary file object and calls back per parsed header byte): an image
upload is one small part, found with a few ``bytes.find`` calls on the body read under a size limit.
"""

from __future__ import annotations

import re

from fastapi import HTTPException, Request

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
FORM_OVERHEAD = 16 * 1024  # room for the multipart headers and boundaries around the image
_NAME = re.compile(r'(?:^|;)\s*name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.IGNORECASE)
_BOUNDARY = re.compile(r'(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)

# the schema FastAPI would have generated for `image: UploadFile = File(...)`, plus the raw-body form
OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "The image file."}}}},
    **{t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(IMAGE_TYPES)},
}}}


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


async def read_upload(request: Request, max_bytes: int, field: str = "image") -> bytes:
    """The image bytes of a form upload (``field``) or of a raw image/* body, checked for content type."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media in IMAGE_TYPES:
        return await read_body(request, max_bytes + 1)  # one byte over: the image check reports the size
    if media != "multipart/form-data":
        raise HTTPException(415, f"send the image as multipart/form-data (field {field!r}) or as a body of an "
                                 f"image type ({_type_list()}), not {media or 'no content type'!r}")
    m = _BOUNDARY.search(ctype)
    if not m:
        raise HTTPException(400, "the multipart/form-data content type names no boundary")
    body = await read_body(request, max_bytes + FORM_OVERHEAD)
    data, part_type = find_form_file(body, (m.group(1) or m.group(2)).encode("latin-1"), field)
    if part_type not in IMAGE_TYPES:
        raise HTTPException(415, f"content type {part_type!r} is not an image type ({_type_list()})")
    return data


def find_form_file(body: bytes, boundary: bytes, field: str) -> tuple[bytes, str | None]:
    """The content and content type of the form part named ``field`` (RFC 7578)."""
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
        m = _NAME.search(headers.get("content-disposition", ""))
        if m and (m.group(1) if m.group(1) is not None else m.group(2)) == field:
            part_type = headers.get("content-type")
            return body[start:stop], part_type.split(";", 1)[0].strip().lower() if part_type else None
        pos = stop + 2 + len(delim)
    raise HTTPException(422, f"malformed request — the form has no {field!r} file field")
