"""The platform's expected failures, and which of them a retry could fix.

Every error below is *not transient*: retrying reads the same bad bytes, the same broken contract,
the same missing partition. Asset bodies run inside `fatal_errors()`, which turns them into a
`dagster.Failure(allow_retries=False)` whose description is the error's own message, so the UI's
headline is the real reason, not "Exceeded max_retries". Only I/O errors (`OSError`: a network
hiccup, a full disk, a lost NFS handle) escape to the step's retry policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class PlatformError(Exception):
    """An expected, non-transient failure; the message names asset, partition, file and rule."""


class IntegrityError(PlatformError):
    """Stored bytes do not match the sha256 recorded when they were written."""


class MissingDataError(PlatformError):
    """An upstream partition, table or record that should exist does not."""


class SourceReadError(PlatformError):
    """A raw file is missing, empty, truncated, mis-encoded or does not match its table's contract."""


class ContractError(PlatformError):
    """Data that breaks a contract rule."""


class RegistryError(PlatformError):
    """A model version, record or pointer that is unknown, malformed, or changed concurrently."""


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, PlatformError) else f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def fatal_errors() -> Iterator[None]:
    """Run an asset body: platform errors and bugs fail the step once, with their own message;
    `OSError` (transient I/O) is left to the retry policy."""
    import dagster as dg

    try:
        yield
    except (dg.Failure, OSError):
        raise
    except dg.DagsterError:
        raise
    except Exception as exc:
        raise dg.Failure(description=describe(exc), allow_retries=False) from exc
