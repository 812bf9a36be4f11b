"""
kcrash.debuginfo.cache
======================

Files of derived debugging information (decoded kallsyms, …) kept under ``cache_dir/<kind>/``,
keyed by the kernel's build-id. A cache file is a header line ``KCRASH <kind> <version>`` followed
by a JSON line of facts the reader checks (with the payload's CRC-32, so a damaged file reads as
absent), then a binary payload. Reads that fail in any way return
None (the caller recomputes); writes are atomic (temporary file + rename) and never raise, because a
read-only or full cache must not stop an analysis. This module knows nothing of what it stores.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

__all__ = ["cache_path_or_none", "read_cache_or_none", "write_cache"]

_KEY = re.compile(r"^[0-9a-f]{8,128}$")
_CRC = "payload_crc32"


def cache_path_or_none(cache_dir: Path | None, kind: str, key: str | None) -> Path | None:
    """Return ``cache_dir/kind/key.bin``, or None without a cache directory or a hex ``key``."""
    if cache_dir is None or key is None or not _KEY.match(key):
        return None
    return cache_dir / kind / f"{key}.bin"


def read_cache_or_none(path: Path | None, kind: str, version: int) -> tuple[dict[str, object], bytes] | None:
    """Return ``(facts, payload)`` of a cache file written by :func:`write_cache`, or None."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    # two newline-terminated header lines, then the payload (sliced once: payloads are megabytes)
    first = data.find(b"\n")
    second = data.find(b"\n", first + 1) if first >= 0 else -1
    if second < 0 or data[:first] != _magic(kind, version):
        return None
    try:
        facts = json.loads(data[first + 1:second])
    except ValueError:
        return None
    payload = data[second + 1:]
    if not isinstance(facts, dict) or facts.get(_CRC) != zlib.crc32(payload):
        return None  # not ours, or damaged since it was written
    return facts, payload


def write_cache(path: Path | None, kind: str, version: int, facts: dict[str, object], payload: bytes) -> None:
    """Write a cache file atomically; errors (read-only or full disk) are ignored."""
    if path is None:
        return
    facts = {**facts, _CRC: zlib.crc32(payload)}
    body = _magic(kind, version) + b"\n" + json.dumps(facts, sort_keys=True).encode() + b"\n" + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # lazy: +10 ms CPU to import it after this module (measured, loaded host)
        import tempfile  # only writers need it (a warm open only reads)

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return


def _magic(kind: str, version: int) -> bytes:
    return f"KCRASH {kind} {version}".encode()
