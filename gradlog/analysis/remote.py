"""Object storage (``s3://``, ``gs://``, ``az://``...) as a place logs are read from.

Through obstore, the Python binding of the Rust ``object_store`` crate that Polars itself reads
object storage with: the same configuration keys as Polars' ``storage_options``
(``aws_endpoint_url``, ``aws_region``, ``aws_access_key_id``, ``aws_allow_http``...), and the
same environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_REGION``...). obstore is
the ``cloud`` extra, imported only when a URL is given.

This module knows storage, not logs: it lists the objects a URL names (one object, a prefix, or
a glob expanded object by object), streams one object's bytes, and turns what the store
answers into one line (:class:`~gradlog.errors.GradlogError`) naming the URL: no such object,
no such bucket, access denied, endpoint unreachable. What a listing holds is judged by
:mod:`gradlog.analysis.sources`; the bytes are read by :mod:`gradlog.analysis.readers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from gradlog.errors import GradlogError, LogFormatError

URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
GLOB_CHARS = re.compile(r"[*?\[]")
INSTALL = "pip install obstore (from a gradlog checkout: pip install '.[cloud]')"
# The schemes obstore reaches (and lists); any other URL (Polars' ``hf://``) is left to Polars.
SCHEMES = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "adl", "azure", "abfs", "abfss", "http", "https"}
)
CHUNK = 1 << 20  # bytes asked of a stream at once

# Keys of the HTTP client, not of a store: obstore takes them apart (``client_options``), where
# Polars (like object_store) also accepts them with the store's prefix (``aws_allow_http``).
_CLIENT_KEYS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_keep_alive_interval",
        "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "randomize_addresses",
        "read_timeout",
        "timeout",
        "user_agent",
    }
)
_PREFIXES = ("aws_", "google_", "azure_")
_TRUE = {"true", "1", "yes", "on"}
_BOOL_KEYS = frozenset(
    {"allow_http", "allow_invalid_certificates", "http1_only", "http2_only", "randomize_addresses"}
)


class MissingObject(LogFormatError):
    """A URL that names nothing: no object, no object under the prefix, no bucket."""


@dataclass(frozen=True)
class Object:
    """One object of a listing."""

    url: str
    size: int
    stamp: str  # its version: the ETag, or its size and last-modified time


def is_url(path: str) -> bool:
    return bool(URL_PATTERN.match(path))


def listed(url: str) -> bool:
    """Whether gradlog lists and reads ``url`` itself (else Polars' scans read it as given)."""
    return url.partition("://")[0].lower() in SCHEMES


def parse_storage_options(pairs: list[str] | None) -> dict[str, str] | None:
    """``--storage-option KEY=VALUE`` (repeatable) as the dict the API takes."""
    if not pairs:
        return None
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GradlogError(
                f"--storage-option {pair!r}: expected KEY=VALUE (as aws_region=eu-west-1)"
            )
        options[key.strip().lower()] = value
    return options


def objects(url: str, storage_options: Mapping[str, str] | None = None) -> list[Object]:
    """The objects ``url`` names, sorted by key: the object itself, every object under a prefix
    (``s3://b/runs/``, or ``s3://b/runs`` when no such object exists), or those a glob matches
    (``*`` and ``?`` within one level, ``**`` across levels, as local globs).

    Raises :class:`MissingObject` when it names none, :class:`GradlogError` when the store
    cannot be read (credentials, endpoint)."""
    obstore = _obstore(url)
    root, key = _split(url)
    store = _store(root, storage_options)
    if GLOB_CHARS.search(key):
        prefix = key[: GLOB_CHARS.search(key).start()].rpartition("/")[0]
        pattern = _glob_regex(key)
        found = [m for m in _list(obstore, store, url, prefix) if pattern.fullmatch(m["path"])]
        if not found:
            raise MissingObject("no object matches", url)
    elif key and not key.endswith("/"):
        try:
            return [_object(root, obstore.head(store, key))]
        except Exception as exc:  # noqa: BLE001 - mapped to one line below
            if not isinstance(exc, FileNotFoundError):
                raise _error(exc, url) from None
        found = _list(obstore, store, url, key + "/")  # a prefix named without its slash
        if not found:
            raise MissingObject("no such object", url)
    else:
        found = _list(obstore, store, url, key)
        if not found:
            raise MissingObject("no objects under this prefix", url)
    return [_object(root, m) for m in sorted(found, key=lambda m: m["path"])]


def open_reader(url: str, storage_options: Mapping[str, str] | None = None):
    """A ``read(n)`` over the bytes of the object ``url``, as they arrive (for the readers of
    :mod:`gradlog.analysis.readers.streams`, which bound what they keep)."""
    if not listed(url):
        raise LogFormatError(
            "only Polars' scans reach this kind of URL, and a log its scan cannot read is "
            "not recovered: copy it to disk",
            url,
        )
    obstore = _obstore(url)
    root, key = _split(url)
    try:
        stream = iter(obstore.get(_store(root, storage_options), key).stream(CHUNK))
    except Exception as exc:  # noqa: BLE001 - mapped to one line
        raise _error(exc, url) from None
    pending = bytearray()

    def read(n: int) -> bytes:
        while len(pending) < n:
            try:
                piece = next(stream, None)
            except Exception as exc:  # noqa: BLE001
                raise _error(exc, url) from None
            if piece is None:
                break
            pending.extend(memoryview(piece))
        out = bytes(pending[:n])
        del pending[:n]
        return out

    return read


def ends_whole(
    urls: list[str], storage_options: Mapping[str, str] | None = None
) -> dict[str, bool]:
    """Whether each object's last byte is a newline (a JSON Lines log a crash cut has none),
    asked with one one-byte request per object, several at once; an object that cannot be
    asked is left out (its read names the problem)."""
    from concurrent.futures import ThreadPoolExecutor

    def last_byte(url: str) -> tuple[str, bool | None]:
        obstore = _obstore(url)
        root, key = _split(url)
        try:
            got = obstore.get(_store(root, storage_options), key, options={"range": {"suffix": 1}})
            return url, bytes(got.bytes()) == b"\n"
        except Exception:  # noqa: BLE001 - the careful read says what is wrong
            return url, None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return {url: whole for url, whole in pool.map(last_byte, urls) if whole is not None}


def _obstore(url: str):
    try:
        import obstore
    except ImportError:
        raise GradlogError(f"{url}: reading object storage needs obstore: {INSTALL}") from None
    return obstore


def _split(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b.jsonl`` as its store (``s3://bucket``) and key (``a/b.jsonl``)."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise GradlogError(f"{url}: no bucket in this URL (expected as s3://BUCKET/KEY)")
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


_STORES: dict[tuple, object] = {}


def _store(root: str, storage_options: Mapping[str, str] | None):
    """One store per bucket and options, kept: it holds the HTTP connections."""
    frozen = (root, tuple(sorted((storage_options or {}).items())))
    if frozen not in _STORES:
        from obstore.store import from_url

        config, client, retry = _obstore_options(storage_options or {})
        try:
            _STORES[frozen] = from_url(
                root, config=config or None, client_options=client or None, retry_config=retry
            )
        except BaseException as exc:  # a Rust panic is a BaseException  # noqa: BLE001
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise GradlogError(f"{root}: bad storage options ({_first_line(exc)})") from None
    return _STORES[frozen]


def _obstore_options(options: Mapping[str, str]) -> tuple[dict, dict, dict | None]:
    """Polars' ``storage_options`` split as obstore takes them: the store's configuration,
    the HTTP client's, and the retries (Polars' ``max_retries``)."""
    config: dict[str, str] = {}
    client: dict[str, object] = {}
    retry = None
    for key, value in options.items():
        key = key.lower()
        bare = next((key[len(p) :] for p in _PREFIXES if key.startswith(p)), key)
        if key == "max_retries":
            retry = {"max_retries": int(value), "retry_timeout": _seconds(300)}
        elif bare in _CLIENT_KEYS:
            client[bare] = str(value).lower() in _TRUE if bare in _BOOL_KEYS else value
        else:
            config[key] = value
    return config, client, retry


def _seconds(n: int):
    from datetime import timedelta

    return timedelta(seconds=n)


def _list(obstore, store, url: str, prefix: str) -> list[dict]:
    try:
        return [m for batch in obstore.list(store, prefix=prefix or None) for m in batch]
    except Exception as exc:  # noqa: BLE001 - mapped to one line
        raise _error(exc, url) from None


def _object(root: str, meta: dict) -> Object:
    etag = meta.get("e_tag")
    stamp = etag.strip('"') if etag else f"{meta['size']}@{meta['last_modified'].isoformat()}"
    return Object(f"{root}/{meta['path']}", int(meta["size"]), stamp)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob over keys as :func:`glob.glob` (``recursive=True``) reads one over paths."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


# What the store says, as one line: the first marker found in its message.
_CREDENTIALS = " (credentials: --storage-option or the AWS_* environment, docs/batch.md)"
_CAUSES = (
    ("NoSuchBucket", "no such bucket", ""),
    ("InvalidAccessKeyId", "access denied: the access key is not known", _CREDENTIALS),
    ("SignatureDoesNotMatch", "access denied: the secret key does not match", _CREDENTIALS),
    ("AccessDenied", "access denied", _CREDENTIALS),
    ("403 Forbidden", "access denied", _CREDENTIALS),
    ("401 Unauthorized", "not authenticated", _CREDENTIALS),
    ("credential", "no credentials", _CREDENTIALS),
    (
        "error sending request",
        "cannot reach the object store",
        " (check the endpoint: aws_endpoint_url or AWS_ENDPOINT_URL)",
    ),
)


def _error(exc: BaseException, url: str) -> GradlogError:
    if isinstance(exc, GradlogError):
        return exc
    text = str(exc)
    for marker, what, hint in _CAUSES:
        if marker.lower() in text.lower():
            kind = MissingObject if marker == "NoSuchBucket" else LogFormatError
            return kind(what + hint, url)
    if isinstance(exc, FileNotFoundError):
        return MissingObject("no such object", url)
    if type(exc).__name__ in ("PermissionDeniedError", "UnauthenticatedError"):
        return LogFormatError("access denied" + _CREDENTIALS, url)
    return LogFormatError(f"cannot be read ({_first_line(exc)})", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
