"""Domain errors. None of them knows about HTTP; the API maps them to status codes in one place.

Messages name fields, kinds and ids — never the personal data itself.
"""

from __future__ import annotations


class CdpError(Exception):
    """Base of every error cdp raises on purpose."""

    code = "error"


class ConfigurationError(CdpError):
    """Settings, key material or the environment are not usable."""

    code = "configuration_error"


class KeyMaterialError(CdpError):
    """Key files or keys are missing, malformed, or in a state that forbids the operation."""

    code = "key_error"


class KeyFileMissingError(KeyMaterialError):
    """The key file does not exist (what to do depends on whether data already exists)."""


class KeyUsageExhaustedError(KeyMaterialError):
    """A key-encryption key reached its usage bound: rotate to a new version."""

    code = "key_usage_exhausted"


class DecryptionError(CdpError):
    """A ciphertext could not be authenticated or its key is gone (tampered, moved or shredded)."""

    code = "decryption_failed"


class KeyShreddedError(DecryptionError):
    """The subject's data key was destroyed: its values are erased. ``subject_id`` names the
    subject (a pseudonymous id) when the key store raised it."""

    code = "key_shredded"

    def __init__(self, message: str, *, subject_id: str | None = None) -> None:
        super().__init__(message)
        self.subject_id = subject_id


class NormalizationError(CdpError):
    """An identity value cannot be normalised (e.g. not an email, not a phone number)."""

    code = "invalid_identity"


class InvalidInputError(CdpError):
    """Input failed validation; ``field`` names where, the message says why (no values)."""

    code = "validation_failed"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(CdpError):
    """The named resource does not exist (or is not visible to the caller)."""

    code = "not_found"


class ConflictError(CdpError):
    """The request conflicts with the current state."""

    code = "conflict"


class AuthenticationError(CdpError):
    """The caller's credentials are missing, unknown, expired or revoked."""

    code = "unauthenticated"


class PermissionDeniedError(CdpError):
    """The policy does not allow this principal this action for this purpose."""

    code = "forbidden"


class WriteContentionError(CdpError):
    """Concurrent writers kept taking the same new rows (identities, ids) from this write, past
    its retries; nothing of it was stored and sending it again is safe (idempotent)."""

    code = "write_contention"
    #: Seconds a client should wait before sending the write again (HTTP ``Retry-After``).
    retry_after = 1
    #: The message is fixed text (no data), and tells the caller what to do: shown as is.
    public_message = True


class RateLimitedError(CdpError):
    """The caller's credential used up its rate (HTTP 429, with ``Retry-After``)."""

    code = "rate_limited"
    #: The message is fixed text (no data): shown as is.
    public_message = True

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ErasureContentionError(WriteContentionError):
    """Concurrent writers kept merging an erasure's subjects, or kept deadlocking with it (on
    PostgreSQL), past its retries. Its data keys are destroyed and no row was deleted: running
    the erasure again finishes it."""


class AuditWriteError(CdpError):
    """The audit record could not be written, so the read it covers must fail."""

    code = "audit_unavailable"


class AuditEntryRefusedError(AuditWriteError, ValueError):
    """The audit writer refused a record's value (not an id or identifier, or too long), so the
    read it covers fails; alone: the record never joined other requests' batch. A
    ``ValueError`` too, as the writer's own refusal is."""


class ExportInterruptedError(CdpError):
    """An export was asked to stop (``cdp serve`` shutting down) and stopped between two chunks
    or webhook batches; its run is closed as ``failed`` with this code. ``export_id`` names the
    run."""

    code = "interrupted"

    def __init__(self, export_id: str) -> None:
        super().__init__("the export was stopped before it finished")
        self.export_id = export_id


class ExportRunningError(ConflictError):
    """Another export of the same segment to the same destination is running now: this one was
    refused at once (nothing staged, decrypted or sent, no run stored), since both would stage
    against the same sync state and send every add twice. Run it again once the other ended."""

    code = "export_running"

    def __init__(self, *, destination: str, segment: str) -> None:
        super().__init__(
            f"an export of segment {segment!r} to destination {destination!r} is already "
            "running; try again once it has finished"
        )
        self.destination = destination
        self.segment = segment


class DestinationDisabledError(ConflictError):
    """The destination is disabled (``cdp destinations disable``): no export runs to it, manual
    or scheduled, until it is enabled again; nothing was stored, staged or sent."""

    code = "destination_disabled"

    def __init__(self, destination: str) -> None:
        super().__init__(
            f"destination {destination!r} is disabled: no export runs to it until an admin "
            "enables it again"
        )
        self.destination = destination


class AudienceTooSmallError(ConflictError):
    """An export would leave fewer subjects than its destination's minimum audience size; no
    subject is added. Its removes (withdrawals) are still sent: ``status`` is the run's status,
    ``refused`` (nothing sent) or ``removes_only``. ``counts`` holds the manifest counts (numbers
    only) that explain why; ``export_id`` names the stored run."""

    code = "audience_too_small"

    def __init__(
        self,
        message: str,
        *,
        counts: dict[str, int] | None = None,
        export_id: str | None = None,
        status: str = "refused",
    ) -> None:
        super().__init__(message)
        self.counts = dict(counts or {})
        self.export_id = export_id
        self.status = status
