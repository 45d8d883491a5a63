"""A tracking URI judged by its text alone: no I/O, no heavy imports, so config validation stays fast (whether the
store is there is tracking/store.py's to find out)."""

from __future__ import annotations

from urllib.parse import urlsplit

from backprop_lab.core.errors import ConfigError
from backprop_lab.core.redaction import redact

TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks")


def check_uri_syntax(uri: str) -> None:
    """A URI that MLflow can use as a tracking store, judged by its text alone (no I/O, no heavy imports)."""
    shown = redact(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (it parses the port: "host:abc" raises here)
    except ValueError as e:
        raise ConfigError(f"tracking.uri: cannot parse {shown!r} ({e}); fix the URI") from None
    scheme = parts.scheme.split("+")[0]
    if scheme == "file" or (scheme == "" and "://" not in uri):
        raise ConfigError(
            f"tracking.uri: {shown!r} is a file store, which MLflow 3.13+ refuses; use sqlite:///PATH/mlflow.db"
        )
    if scheme not in TRACKING_SCHEMES or "://" not in uri:
        allowed = "null (the default store), or a URI of " + ", ".join(TRACKING_SCHEMES)
        raise ConfigError(f"tracking.uri: must be {allowed}, got {shown!r}")
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///").split("?")[0] if uri.startswith("sqlite:///") else ""
        if path in ("", ":memory:"):  # sqlite:// and sqlite:/// are in-memory too
            raise ConfigError(
                f"tracking.uri: {shown!r} is an in-memory store, which keeps nothing after the process; "
                "use sqlite:///PATH/mlflow.db"
            )
