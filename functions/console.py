"""The operations console's static files (``console/``) at ``/api/console/``.

One anonymous GET route, ``console/{*path}``, declared with ``HttpBlueprint.http`` like every HTTP
function (so Azure and the embedded host serve it alike) and ``documented=False``: the
console is a client of the API, not part of it, so it is not in ``openapi.json``. The
files hold no secrets (keys are typed into the browser and kept in its session storage),
which is why they may be served without a key.

Serving is deliberately narrow:

* a path is a list of segments that each start with a letter or digit and use only
  ``[A-Za-z0-9._-]`` — no ``..``, no hidden files, no encoded separators — and ends in an
  extension of :data:`CONTENT_TYPES`; anything else is 404. The file must be a regular
  file inside ``console/`` once symbolic links are resolved;
* every answer has its exact Content-Type, ``X-Content-Type-Options: nosniff``, a strong
  ETag (a hash of the bytes; ``If-None-Match`` gets 304) and ``Cache-Control: no-cache``:
  without a build step file names carry no content hash, so a browser revalidates each
  file on each load (a 304, no body) and never runs a stale module after an upgrade;
* pages get a Content-Security-Policy that allows only this origin's scripts, styles,
  images (and ``blob:`` images: charts are fetched with the key and shown from a blob)
  and connections, and no framing.

``/api/console`` without the slash redirects to ``/api/console/`` so relative URLs in
the page resolve under it; the embedded host also redirects ``/`` there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from functions import problems
from functions.http_routes import ROUTE_PREFIX, HttpBlueprint

bp = HttpBlueprint()

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
HOME = f"/{ROUTE_PREFIX}/console/"
"""The console's address on either host."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""What is served, by extension; other files in ``console/`` (READMEs, licences) are not."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def console_file(path: str, root: Path = CONSOLE_DIR) -> StaticFile | None:
    """The console's file at ``path`` (``""`` is ``index.html``), or None when no file
    may be served there (see the module docstring for what may)."""
    segments = (path or "index.html").split("/")
    if len(segments) > 8 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    content_type = CONTENT_TYPES.get(Path(segments[-1]).suffix.lower())
    if content_type is None:
        return None
    base = root.resolve()
    try:
        resolved = base.joinpath(*segments).resolve(strict=True)
        if not resolved.is_relative_to(base) or not resolved.is_file():
            return None
        stat = resolved.stat()
    except (OSError, RuntimeError):
        return None
    return _read(resolved, stat.st_mtime_ns, stat.st_size, content_type)


@lru_cache(maxsize=64)
def _read(path: Path, mtime_ns: int, size: int, content_type: str) -> StaticFile | None:
    """The file's bytes and ETag, cached per version (mtime and size) of the file."""
    try:
        body = path.read_bytes()
    except OSError:
        return None
    return StaticFile(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


@bp.http("console", "console/{*path}", ["GET"], auth_level=func.AuthLevel.ANONYMOUS,
        summary="The operations console's static files (not part of the API).",
        responses={200: None, 304: None}, problems=(404,), measured=False, documented=False)
def console(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path") or ""
    if not path and not urlsplit(req.url).path.endswith("/"):
        return func.HttpResponse(status_code=308, headers={"Location": HOME})
    found = console_file(path)
    if found is None:
        raise problems.not_found(f"{HOME}{path}")
    headers = {"ETag": found.etag, "Cache-Control": "no-cache"}
    if found.etag in [t.strip() for t in (req.headers.get("if-none-match") or "").split(",")]:
        return func.HttpResponse(status_code=304, headers=headers)
    headers.update({"Content-Type": found.content_type, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"})
    if found.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return func.HttpResponse(found.body, status_code=200, headers=headers,
                             mimetype=found.content_type.split(";")[0])
