"""The LLM hierarchy's assignment step: each child sent, in batches, with the categories nearest
to it, and the model's choice of category validated (every child of the batch exactly once, only
categories it was offered). A batch that never validates keeps its children under their
structural category, with the reason (:mod:`bailclio.llmnaming.hierarchy`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from bailclio.config import Config
from bailclio.llm.base import ChatRequest, LLMBackend
from bailclio.llm.structured import generate_structured
from bailclio.llmnaming.delimiters import numbered
from bailclio.llmnaming.prompts import ASSIGN_SCHEMA, ASSIGN_SYSTEM, ASSIGN_TASK
from bailclio.llmnaming.requests import child_item
from bailclio.llmnaming.types import NodeName


class Assignment(BaseModel):
    model_config = ConfigDict(extra="ignore")
    group: int
    category: int


def assignment_model(n_groups: int, n_categories: int) -> type[BaseModel]:
    """The reply model of one assignment batch: every group 1..n_groups exactly once, each with a
    category in 1..n_categories."""

    class Assignments(BaseModel):
        model_config = ConfigDict(extra="ignore")
        assignments: list[Assignment]

        @model_validator(mode="after")
        def _every_group_once(self) -> Assignments:
            seen = [a.group for a in self.assignments]
            missing = sorted(set(range(1, n_groups + 1)) - set(seen))
            repeated = sorted({g for g in seen if seen.count(g) > 1})
            unknown = sorted({g for g in seen if not 1 <= g <= n_groups})
            bad = sorted({a.category for a in self.assignments if not 1 <= a.category <= n_categories})
            problems = []
            if missing:
                problems.append(f"groups {missing} not assigned")
            if repeated:
                problems.append(f"groups {repeated} assigned more than once")
            if unknown:
                problems.append(f"no groups {unknown}")
            if bad:
                problems.append(f"no categories {bad} (1..{n_categories})")
            if problems:
                raise ValueError("; ".join(problems))
            return self

    return Assignments


def assign_request(
    children: Sequence[NodeName], categories: Sequence[NodeName], cfg: Config, tag: str
) -> ChatRequest:
    chars = cfg.naming.llm_summary_chars

    def item(n: NodeName) -> str:
        return " ".join(child_item(n).split())

    blocks = [
        numbered("groups", [item(c) for c in children], chars),
        numbered("categories", [item(c) for c in categories], chars),
    ]
    return ChatRequest(
        messages=[
            {"role": "system", "content": ASSIGN_SYSTEM},
            {"role": "user", "content": "\n\n".join([*blocks, ASSIGN_TASK])},
        ],
        max_tokens=max(cfg.llm.max_tokens, 24 * len(children) + 32),
        temperature=cfg.llm.temperature,
        seed=cfg.seed,
        json_schema=ASSIGN_SCHEMA,
        schema_name="Assignments",
        tag=tag,
    )


@dataclass
class Batch:
    """Children sent together, and the categories offered to them."""

    children: list[int]
    offered: list[int]


@dataclass
class Assigned:
    """Each child's category, where that came from (``llm`` / ``structural``) and why a child
    kept its structural one; the batches' counts."""

    category: dict[int, int]
    source: dict[int, str]
    error: dict[int, str] = field(default_factory=dict)
    requests: int = 0
    first_attempt_valid: int = 0
    failed_batches: int = 0
    errors: list[str] = field(default_factory=list)


def batches(
    movable: list[int],
    assign: dict[int, int],
    cats: list[int],
    cat_cents: dict[int, np.ndarray],
    centre_of: dict[int, np.ndarray],
    cfg: Config,
) -> list[Batch]:
    """The movable children in batches of ``naming.hierarchy_assign_batch`` (in order of their
    current category), each offered its own categories and the nearest others, up to
    ``naming.hierarchy_candidates``."""
    out: list[Batch] = []
    if len(cats) <= 1:
        return out
    ordered = sorted(movable, key=lambda c: (assign[c], c))
    size = cfg.naming.hierarchy_assign_batch
    for i in range(0, len(ordered), size):
        batch = ordered[i : i + size]
        centre = np.mean([centre_of[c] for c in batch], axis=0)
        own = sorted({assign[c] for c in batch})
        near = sorted(cats, key=lambda k: (float(np.linalg.norm(cat_cents[k] - centre)), k))
        offered = own + [k for k in near if k not in own]
        out.append(Batch(batch, sorted(offered[: max(cfg.naming.hierarchy_candidates, len(own))])))
    return out


def assign_children(
    backend: LLMBackend,
    batched: list[Batch],
    kids: dict[int, NodeName],
    cat_names: dict[int, NodeName],
    structural: dict[int, int],
    cfg: Config,
    label: str,
) -> Assigned:
    """Ask the model for every batch; a child the model placed gets its category (``llm``), the
    others keep their ``structural`` one."""
    reqs = [
        assign_request(
            [kids[c] for c in b.children], [cat_names[k] for k in b.offered], cfg, f"assign {label} {i}"
        )
        for i, b in enumerate(batched)
    ]
    attempts: list[int] = []
    replies = (
        generate_structured(
            backend,
            reqs,
            [assignment_model(len(b.children), len(b.offered)) for b in batched],
            cfg.llm.max_attempts,
            desc=f"hierarchy: {label} assignment",
            attempts_out=attempts,
        )
        if reqs
        else []
    )
    out = Assigned(dict(structural), {c: "structural" for c in structural}, requests=len(reqs))
    out.first_attempt_valid = sum(
        a == 1 for a, (v, _) in zip(attempts, replies, strict=True) if v is not None
    )
    for b, (value, err) in zip(batched, replies, strict=True):
        if value is None:
            out.failed_batches += 1
            out.errors.append(err or "no reply")
            for c in b.children:
                out.error[c] = f"assignment failed, structural parent kept: {err}"
            continue
        for a in value.assignments:  # type: ignore[attr-defined]
            c = b.children[a.group - 1]
            out.category[c] = b.offered[a.category - 1]
            out.source[c] = "llm"
    return out


def limit_top_share(assigned: Assigned, structural: dict[int, int], weights: np.ndarray, cfg: Config) -> None:
    """Where the model's assignment puts more than ``hierarchy.top_max_share`` of the rows under one
    top category, the children it moved into that category go back to their structural one (in
    place); a category that large by the structural tree alone is left as it is."""
    assign = assigned.category
    limit = cfg.hierarchy.top_max_share
    total = float(sum(weights[c] for c in assign)) or 1.0
    share: dict[int, float] = {}
    for c, k in assign.items():
        share[k] = share.get(k, 0.0) + float(weights[c]) / total
    for k, s in share.items():
        if s <= limit:
            continue
        for c in [c for c in assign if assign[c] == k and structural[c] != k]:
            assign[c] = structural[c]
            assigned.source[c] = "structural"
            assigned.error[c] = (
                f"structural parent kept: the model's assignment put {s:.0%} of the rows under one "
                f"top category (hierarchy.top_max_share {limit:.0%})"
            )


__all__ = [
    "Assigned",
    "Assignment",
    "Batch",
    "assign_children",
    "assign_request",
    "assignment_model",
    "batches",
    "limit_top_share",
]
