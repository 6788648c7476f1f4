"""The exceptions roster_client raises: one for a call that failed for good, one for settings that cannot work,
one for a damaged state file. Each message names what failed and, where there is one, the fix."""

from __future__ import annotations

from typing import Optional

import grpc


class RosterConfigError(ValueError):
    """A setting that cannot work (a target without a scheme, ``https://`` without a CA, an unreadable token
    file, ...): the message names the setting and the fix. Raised at construction, never retried."""


class RosterCallError(Exception):
    """A call that failed for good: a non-transient answer (R2, after one attempt), or every attempt failed
    transiently (R3, ``gave_up``). Names the call, the attempts, the time spent and the last status."""

    def __init__(
        self,
        method: str,
        attempts: int,
        max_attempts: int,
        elapsed_s: float,
        code: grpc.StatusCode,
        details: str,
        request_id: str,
    ) -> None:
        self.method = method
        self.attempts = attempts
        self.max_attempts = max_attempts
        self.elapsed_s = elapsed_s
        self.code = code
        self.details = details
        self.request_id = request_id
        self.gave_up = code in TRANSIENT_CODES
        status = f"{code.name}: {details}" if details else code.name
        if self.gave_up:
            text = (
                f"{method}: gave up after {attempts} of {max_attempts} attempts over {elapsed_s:.2f} s; last status "
                f"{status} (request id {request_id})"
            )
        else:
            text = (
                f"{method}: {status} after {attempts} attempt{'s' if attempts > 1 else ''} over {elapsed_s:.2f} s; not "
                f"retried, since only UNAVAILABLE and a timed-out attempt are transient (request id {request_id})"
            )
        super().__init__(text)


class StateFileError(Exception):
    """The follower's state file cannot be read or written; names the file and the way out."""

    def __init__(self, path: str, problem: str, hint: Optional[str] = None) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" + (f". {hint}" if hint else ""))


# R2: the only failures worth another attempt: the server could not be reached or answered UNAVAILABLE, or one
# attempt ran out of its time limit.
TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
