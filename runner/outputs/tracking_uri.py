"""A tracking URI: checked (malformed, in-memory, a local store's folder missing), reached
(with its user and password, as MLflow sends them), and shown with its password as `***` wherever pipe prints or records it."""

from __future__ import annotations

import base64
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from runner.errors import EXIT_USAGE, PipeError
from runner.spec.store_paths import malformed_problem, missing_folder_problem


class TrackingError(PipeError):
    """The run could not be tracked: one line saying why (the run directory is untouched)."""


class TrackingRequestError(TrackingError):
    """What was asked cannot be uploaded (not a run directory, no tracking URI): a usage mistake."""

    exit_code = EXIT_USAGE


# scheme://user:password@ -> scheme://user:***@ (anywhere in a text: a --set, a message)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^@\s/]*)@")


def mask(text):
    """`text` with the password of every URI in it as `***`; other values unchanged."""
    if not isinstance(text, str):
        return text
    return _USERINFO.sub(lambda m: m["head"] + ("***" if m["password"] else "") + "@", text)


def has_password(uri) -> bool:
    """Whether a URI holds a password (`scheme://user:password@host`)."""
    return isinstance(uri, str) and mask(uri) != uri


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without its user and password, user, password); raises ValueError when malformed."""
    parts = urllib.parse.urlsplit(uri)
    parts.port  # noqa: B018 -- ValueError on a port that is not a number
    if "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username or "")
    password = None if parts.password is None else urllib.parse.unquote(parts.password)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), user, password


def check_uri(tracking_uri: str) -> None:
    """A tracking URI that cannot be used (malformed, an in-memory SQLite store): TrackingError;
    a local store (sqlite:///, file:, a path) in a folder that does not exist: TrackingRequestError
    (MLflow would make the folders, wherever a typo puts them)."""
    shown = mask(tracking_uri)
    malformed = malformed_problem(tracking_uri)
    if malformed:
        raise TrackingError(f"{shown} is {malformed}")
    if tracking_uri.startswith("sqlite:") and tracking_uri.split("?")[0] in {"sqlite:", "sqlite://", "sqlite:///",
                                                                            "sqlite:///:memory:"}:
        raise TrackingError(f"{shown} is an in-memory database that keeps nothing: "
                            "name its file (sqlite:///mlflow.db)")
    problem = missing_folder_problem(tracking_uri)
    if problem:
        raise TrackingRequestError(f"{shown}: {problem}")


def check_reachable(tracking_uri: str) -> None:
    """A tracking server that does not answer its health check within seconds: TrackingError.
    A user and password in the URI are sent as MLflow sends them (HTTP basic auth)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    shown = mask(tracking_uri)
    bare, user, password = split_userinfo(tracking_uri)
    request = urllib.request.Request(bare.rstrip("/") + "/health")
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode("utf-8")).decode("ascii")
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read(64)
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise TrackingError(f"{shown} answers its health check with HTTP {e.code}") from None
    except (OSError, ValueError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise TrackingError(f"{shown} cannot be reached: {_first_line(reason)}") from None


def masked_copy(path: Path, folder: Path) -> str:
    """`path`, or a copy of it in `folder` with the passwords of its URIs as `***`."""
    if path.suffix not in {".json", ".yaml", ".yml", ".txt", ".log", ".csv"} or path.stat().st_size > 10 << 20:
        return str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return str(path)
    if mask(text) == text:
        return str(path)
    copy = folder / path.relative_to(path.anchor).as_posix().replace("/", "_") / path.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(mask(text), encoding="utf-8")
    return str(copy)


def _first_line(error) -> str:
    text = mask(str(error).strip())
    return text.splitlines()[0][:1000] if text else type(error).__name__
