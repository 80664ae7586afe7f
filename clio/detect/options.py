"""What ``bailclio detect`` measures and how: the options, checked when they are made."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bailclio.detect import protocol
from bailclio.errors import UserError

METHODS = ("prompt", "string", "tool")
# When a turn bails by several methods, bails.parquet names the first of these.
METHOD_PRIORITY = ("prompt", "tool", "string")
REFUSAL_METHODS = ("lexical", "classifier", "judge", "none")


@dataclass
class DetectOptions:
    """What to measure and how; see ``bailclio detect --help``."""

    model: str
    methods: tuple[str, ...] = METHODS
    turns: Literal["last", "all"] = "last"
    replies: Literal["regenerate", "keep"] = "regenerate"
    samples: int = 10
    threshold: float = 0.5
    model_label: str | None = None
    journal: bool = False
    flag_false_bails: bool = False
    scoring: Literal["auto", "logprobs", "samples", "sequence"] = "auto"
    top_logprobs: int = 10
    reply_max_tokens: int = 512
    reply_temperature: float = 0.0
    sample_temperature: float = 1.0
    seed: int = 42
    refusal: Literal["lexical", "classifier", "judge", "none"] = "lexical"
    refusal_model: str | None = None
    refusal_threshold: float = 0.5
    refusal_batch_size: int = 16
    prefix: str | None = None  # a file of messages put before every conversation

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise UserError(
                f"--methods: unknown method {bad[0]!r} (use a comma list of prompt, string, tool)"
                if bad
                else "--methods: choose at least one of prompt, string, tool"
            )
        self.methods = tuple(m for m in METHODS if m in self.methods)
        if self.turns not in ("last", "all"):
            raise UserError(f"--turns: expected last or all, got {self.turns!r}")
        if self.replies not in ("regenerate", "keep"):
            raise UserError(f"--replies: expected regenerate or keep, got {self.replies!r}")
        if self.samples < 1:
            raise UserError(f"--samples: must be at least 1, got {self.samples}")
        if self.scoring not in ("auto", "logprobs", "samples", "sequence"):
            raise UserError(f"--scoring: expected auto, logprobs, samples or sequence, got {self.scoring!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise UserError(f"--threshold: must be in [0, 1), got {self.threshold}")
        if self.refusal not in REFUSAL_METHODS:
            raise UserError(f"--refusal: expected {', '.join(REFUSAL_METHODS)}, got {self.refusal!r}")
        if self.refusal == "classifier" and not self.refusal_model:
            raise UserError("--refusal classifier needs --refusal-model PATH_OR_NAME")
        if not 0.0 <= self.refusal_threshold < 1.0:
            raise UserError(f"--refusal-threshold: must be in [0, 1), got {self.refusal_threshold}")
        if self.model_label is None:
            self.model_label = protocol.default_model_label(self.model)
