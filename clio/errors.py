"""Errors that the CLI turns into one clear line and a non-zero exit, and the exit statuses.

Exit statuses of every ``bailclio`` command:

* :data:`EXIT_OK` (0): done; for ``run``, the run is complete (``manifest.json`` ``status =
  "complete"``).
* 1: an unexpected error (a bug: a traceback is printed).
* :data:`EXIT_USER` (2): bad input, option, config or run directory: one line on stderr, nothing
  written or replaced.
* :data:`EXIT_LLM_UNAVAILABLE` (3): the LLM server cannot be reached before any work (preflight),
  or most of its recent calls failed for transport reasons during the LLM stage (circuit
  breaker): one line naming the server, the error and how to resume; completed calls stay in the
  LLM cache, no output is written or replaced.
* :data:`EXIT_INCOMPLETE` (4): ``run`` wrote its run, but part of the LLM stage failed (rows
  clustered on their raw text, nodes left with keyphrase names, the call budget reached):
  ``manifest.json`` says ``status = "incomplete"`` and lists why in ``incomplete``.
* 130: interrupted (Ctrl-C); the previous output is left as it was.
"""

EXIT_OK = 0
EXIT_USER = 2
EXIT_LLM_UNAVAILABLE = 3
EXIT_INCOMPLETE = 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Bad input, a bad run directory or a bad option: printed as one line, exit status 2."""

    exit_code = EXIT_USER


class LLMUnavailable(UserError):
    """The LLM server cannot be reached, or keeps failing: one line, exit status 3."""

    exit_code = EXIT_LLM_UNAVAILABLE

    def __init__(self, message: str, *, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable  # stopped mid-way: a rerun continues from the LLM cache
