"""One exception type for every user-caused data problem.

Builders and pipelines raise `DataError` with a message that names the file and says
what is wrong and what to do, so a failed build ends with one readable line instead of
a deep traceback from PIL, xml.etree or json.
"""

from __future__ import annotations

import os
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike, epath.Path]


class DataError(ValueError):
    """Bad or missing input data (a file, a folder, an annotation, a label)."""

    def __init__(self, path: PathLike | None, problem: str, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        msg = problem if path is None else f"{path}: {problem}"
        if fix:
            msg += f" {fix}"
        super().__init__(msg)


def require_dir(path: PathLike, what: str, fix: str | None = None) -> epath.Path:
    """Returns `path` as an epath.Path, or raises DataError if it is not a directory."""
    p = epath.Path(path)
    if not p.exists():
        raise DataError(p, f"{what} not found (missing directory).", fix)
    if not p.is_dir():
        raise DataError(p, f"{what} should be a directory but is a file.", fix)
    return p


def require_file(path: PathLike, what: str, fix: str | None = None) -> epath.Path:
    """Returns `path` as an epath.Path, or raises DataError if it is not a file."""
    p = epath.Path(path)
    if not p.exists():
        raise DataError(p, f"{what} not found (missing file).", fix)
    if p.is_dir():
        raise DataError(p, f"{what} should be a file but is a directory.", fix)
    return p
