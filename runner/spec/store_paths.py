"""The local file behind a store's URI (an SQLite database, an MLflow file store), and the
folder it needs: MLflow and SQLAlchemy create missing folders, or fail late, so a typo in a
path would silently make `/nonexist/dir/` or end a run with nothing stored. A missing folder
is refused instead, as `pipe predict --output` refuses one. No TensorFlow, no MLflow: the
validate path uses it.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

# scheme://..., scheme+driver://... (SQLAlchemy), scheme:... (file:relative): a URI, not a path
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9.-]*)(\+[A-Za-z0-9_.-]+)?:")


def local_store(uri: str) -> Path | None:
    """The file (SQLite) or folder (a file store) that `uri` stores into on this machine, as
    written (relative paths are relative to the working directory); None for a server, an
    in-memory database or anything else that is not a local path."""
    match = _SCHEME.match(uri)
    if match is None or len(match["scheme"]) == 1:  # a plain path (C:\\ too): MLflow's file store
        return Path(uri) if uri.strip() else None
    scheme = match["scheme"].lower()
    if scheme == "sqlite":
        rest = uri[match.end():].split("?", 1)[0]
        if not rest.startswith("//"):
            return None
        # SQLAlchemy: sqlite:///relative.db, sqlite:////absolute.db; sqlite:// is in memory
        path = rest[2:]
        path = path[1:] if path.startswith("/") else path
        return Path(path) if path and path != ":memory:" else None
    if scheme == "file":
        parts = urllib.parse.urlsplit(uri)
        path = urllib.parse.unquote(parts.path)
        return Path(path) if path else None
    return None


def missing_folder(uri, relative_too: bool = True) -> Path | None:
    """The folder that would hold `uri`'s local store when it does not exist, else None.

    `relative_too=False` looks only at absolute paths: `pipe validate` may run elsewhere than
    the run (in CI), where a relative path means another folder.
    """
    if not isinstance(uri, str):
        return None
    store = local_store(uri)
    if store is None or (not relative_too and not store.is_absolute()):
        return None
    folder = store.expanduser().parent
    return None if folder.is_dir() else folder


def missing_folder_problem(uri, relative_too: bool = True) -> str | None:
    """`the folder /nonexist/dir does not exist` (for `uri`'s store), or None."""
    folder = missing_folder(uri, relative_too)
    return None if folder is None else f"the folder {folder} does not exist"


def malformed_problem(uri) -> str | None:
    """Why `uri` is not a URI at all (a port that is not a number), else None."""
    if not isinstance(uri, str):
        return None
    try:
        urllib.parse.urlsplit(uri).port  # noqa: B018 -- ValueError on a port that is not a number
    except ValueError as e:
        return f"not a valid tracking URI: {e}"
    return None
