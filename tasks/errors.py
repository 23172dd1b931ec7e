"""Errors a user can act on. The CLI and the flow print them as one message, never a traceback."""

from __future__ import annotations


class RFTError(Exception):
    """Base of every error that carries a message meant for the user."""


class TransientError(RFTError):
    """A server failed in a way that may pass (it is restarting, overloaded, the network blinked): a loop that
    polls it logs the failure, backs off and tries again."""


class ConfigError(RFTError):
    """params.yaml has an unknown key or a bad value; the message names the key."""


class DataError(RFTError):
    """Input data broke a rule. The message names the file, the column, the rule and example rows."""

    def __init__(self, path, rule: str, *, column: str | None = None, rows: list | None = None,
                 detail: str = ""):
        self.path, self.rule, self.column, self.rows, self.detail = str(path), rule, column, rows or [], detail
        where = f" column '{column}'" if column else ""
        msg = f"{self.path}:{where} rule '{rule}' failed"
        if detail:
            msg += f": {detail}"
        if self.rows:
            shown = "; ".join(f"row {r}: {v}" for r, v in self.rows[:5])
            more = f" (and {len(self.rows) - 5} more)" if len(self.rows) > 5 else ""
            msg += f"\n  examples: {shown}{more}"
        super().__init__(msg)


class DataValidationError(RFTError):
    """One or more data rules failed (a Great Expectations suite); holds one DataError per rule."""

    def __init__(self, failures: list[DataError], docs: str | None = None):
        self.failures = failures
        lines = [f"{len(failures)} data rule(s) failed; nothing downstream was written:"]
        lines += [f"- {f}" for f in failures]
        if docs:
            lines.append(f"Report: {docs} (one page that opens offline; its Data Docs beside it)")
        super().__init__("\n".join(lines))


class StoreError(RFTError):
    """The disk or a store cannot take what a stage writes (full, read-only, not ours, damaged); the message
    names the path. Outputs are written beside their target and renamed in, so nothing half-written is left."""


# errno values that say "this place cannot be written": the same write fails again until a person acts.
_STORE_ERRNOS = {"ENOSPC": "no space left on the device: free some and rerun",
                 "EDQUOT": "the disk quota is used up: free some and rerun",
                 "EFBIG": "the file would exceed the size this process may write",
                 "EROFS": "a read-only file system",
                 "EACCES": "not writable (permission denied)",
                 "EPERM": "not permitted"}


def store_error(exc: OSError) -> StoreError | None:
    """A StoreError naming the path of ``exc``, when it is one of the ``_STORE_ERRNOS``; else None."""
    import errno

    name = errno.errorcode.get(exc.errno or -1)
    if name not in _STORE_ERRNOS:
        return None
    where = exc.filename or "a stage output"
    return StoreError(f"{where}: {_STORE_ERRNOS[name]}; nothing half-written was left")
