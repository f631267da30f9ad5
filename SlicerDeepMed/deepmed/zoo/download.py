"""Downloads that are installed only when complete and matching their checksum.

The file goes to a temporary name beside the destination while its sha256 (and, for catalogues that
publish one, such as the MONAI Model Zoo, its SHA-1) is computed; a truncated transfer, a size or
checksum mismatch, a download over the size limit or an unreachable server leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from deepmed.errors import DeepMedError

CHUNK = 1 << 16
TIMEOUT_S = 30
MAX_DOWNLOAD_BYTES = 20 * 1024 ** 3  # when the catalogue states no size: no model archive is larger


def open_url(url: str):
    """A readable stream and its announced length (None when unknown) for http(s), file: URLs or paths."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and sys.platform == "win32"):
        path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url)
        if not path.is_file():
            raise DeepMedError(f"{url}: file not found")
        return open(path, "rb"), path.stat().st_size
    if parsed.scheme not in ("http", "https"):
        raise DeepMedError(f"{url}: unsupported URL scheme {parsed.scheme!r} (expected https, http or a file path)")
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "deepmed"}),
                                          timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DeepMedError(f"{url}: server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeepMedError(f"{url}: cannot connect ({reason}); are you offline?") from None
    length = response.headers.get("Content-Length")
    return response, int(length) if length and length.isdigit() else None


def read_text(url: str) -> str:
    stream, _ = open_url(url)
    with stream:
        try:
            return stream.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as exc:
            raise DeepMedError(f"{url}: transfer failed ({exc})") from None
        except UnicodeDecodeError:
            raise DeepMedError(f"{url}: not UTF-8 text") from None


def download(url: str, destination: Path, *, sha256: str | None = None, sha1: str | None = None,
             size: int | None = None, progress=None) -> Path:
    """Fetch ``url`` to ``destination`` only if it is complete and every checksum given matches.

    ``sha1`` is a publisher's checksum (MONAI's model_info.json); at least one of ``sha256``/``sha1`` is needed.
    ``progress``: None (a tqdm bar on stderr), False (silent) or a callable ``(done_bytes, total_bytes)``.
    """
    if not sha256 and not sha1:
        raise ValueError("download() needs the expected sha256 or sha1")
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    stream, announced = open_url(url)
    total = size or announced
    limit = size if size is not None else MAX_DOWNLOAD_BYTES
    if announced is not None and announced > limit:
        stream.close()
        raise DeepMedError(f"{url}: announces {announced} bytes, more than the {limit} expected; nothing downloaded")
    bar = None
    if progress is None:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, file=sys.stderr)
    digests, received = {"sha256": hashlib.sha256(), "SHA-1": hashlib.sha1(usedforsecurity=False)}, 0
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as out, stream:
            while True:
                try:
                    block = stream.read(CHUNK)
                except http.client.IncompleteRead as exc:
                    received += len(exc.partial)
                    raise DeepMedError(f"{url}: transfer truncated after {received} of {total} bytes") from None
                except (OSError, http.client.HTTPException) as exc:
                    raise DeepMedError(f"{url}: transfer failed after {received} bytes ({exc})") from None
                if not block:
                    break
                received += len(block)
                if received > limit:
                    raise DeepMedError(f"{url}: more than the {limit} bytes expected; download stopped, nothing "
                                       "installed")
                out.write(block)
                for digest in digests.values():
                    digest.update(block)
                if bar is not None:
                    bar.update(len(block))
                elif callable(progress):
                    progress(received, total)
        if announced is not None and received < announced:
            raise DeepMedError(f"{url}: transfer truncated after {received} of {announced} bytes")
        if size is not None and received != size:
            raise DeepMedError(f"{url}: expected {size} bytes (catalogue), received {received}")
        for name, expected in (("sha256", sha256), ("SHA-1", sha1)):
            got = digests[name].hexdigest()
            if expected and got != expected.lower():
                raise DeepMedError(f"{url}: {name} mismatch: expected {expected.lower()}, got {got}; nothing installed")
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    finally:
        if bar is not None:
            bar.close()
    return destination
