"""Exceptions that name what they are about, for the stages to catch by kind."""

from __future__ import annotations

from typing import NamedTuple


class SampleError(ValueError):
    """One sample cannot be used: unreadable, of the wrong shape or type, non-finite values, a failed step.

    ``sample_id`` names the sample and ``stage`` the stage that found it, so that a
    policy that skips bad samples can list them; the message names the sample and,
    where one is at fault, its file. A ValueError, so callers that catch those still do.
    """

    def __init__(self, sample_id: str, reason: str, stage: str = "preprocess") -> None:
        super().__init__(f"sample {sample_id!r}: {reason}")
        self.sample_id = sample_id
        self.reason = reason
        self.stage = stage


#: What a stage does with a sample it cannot use (config ``on_error``): stop the run, or leave it out.
ON_ERROR = ("fail", "skip")


class Issue(NamedTuple):
    """One row of ``failures.tsv``: a sample a stage ``skipped`` (left out from there on) or warned about."""

    sample: str
    stage: str
    kind: str  # "skipped" or "warning"
    reason: str


def check_policy(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error
