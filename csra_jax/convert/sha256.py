"""Checking a downloaded weight file against the sha256 its publisher gives.

A full digest (64 hex digits) or a prefix of at least 8: torchvision names its files
``<name>-<first 8 hex digits of the sha256>.pth`` (e.g. ``resnet101-63fe2227.pth``), so
the name itself is a check. A mismatch means a truncated download or another file.
"""

from __future__ import annotations

import hashlib
import os
import re

MIN_PREFIX = 8
_HEX = re.compile(r"[0-9a-f]+")


def normalize_sha256(expected: str) -> str:
    """Lower-cased hex; ValueError (one line) when it cannot be a sha256 or its prefix."""
    value = expected.strip().lower()
    if not (_HEX.fullmatch(value) and MIN_PREFIX <= len(value) <= 64):
        raise ValueError(f"sha256 {expected!r} is not a hex digest: give the 64 hex digits "
                         f"(or at least the first {MIN_PREFIX}) of `sha256sum FILE`.")
    return value


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str, expected: str) -> str:
    """Returns the file's full sha256; ValueError naming the file if it does not match."""
    want = normalize_sha256(expected)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"sha256 applies to a weight file, but {path!r} is a directory; "
                         "verify the file before converting it (python -m csra_jax.convert "
                         "--sha256 HEX FILE OUT_DIR).")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist.")
    got = file_sha256(path)
    if not got.startswith(want):
        raise ValueError(f"sha256 mismatch for {path!r}: the file has {got}, expected "
                         f"{want}; download it again (or fix the expected digest).")
    return got
