"""The detector: reply chains, the three methods' calls and decisions, journals and bail rows.

See :mod:`bailclio.detect.runner` for the call model; the prompt method's scoring is in
:mod:`bailclio.detect.prompt_method`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bailclio.detect import protocol, scoring
from bailclio.detect.conversations import Cell, Conversation, visible
from bailclio.detect.options import METHOD_PRIORITY, DetectOptions
from bailclio.detect.outputs import DETECTION_SCHEMA
from bailclio.detect.prompt_method import PromptScoring, clean
from bailclio.llm.base import ChatRequest, ChatResult, LLMBackend

_log = logging.getLogger(__name__)


class Detector(PromptScoring):
    """Runs one detection over loaded conversations with a back-end."""

    def __init__(
        self,
        backend: LLMBackend,
        options: DetectOptions,
        judge: LLMBackend | None = None,
        log: Any = None,
    ) -> None:
        self.backend = backend
        self.opt = options
        self.judge = judge
        self.requests: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.scoring_mode: str | None = None
        self._sequence_ok: bool | None = None  # does the server return prompt logprobs?
        self.journal_failures = 0
        self.rows: list[dict[str, Any]] = []  # the detection rows of the current run
        # --replies keep: replies generated where a scored turn had none (the context keeps the
        # conversation as it is)
        self._keep_generated: dict[tuple[str, int], Any] = {}
        self._log = log or _log.info

    # ---- helpers -----------------------------------------------------------------------------
    def _gen(self, purpose: str, reqs: list[ChatRequest]) -> list[ChatResult]:
        if not reqs:
            return []
        self.requests[purpose] = self.requests.get(purpose, 0) + len(reqs)
        t0 = time.perf_counter()
        out = self.backend.generate(reqs, desc=f"detect {purpose}")
        self.timings[purpose] = self.timings.get(purpose, 0.0) + time.perf_counter() - t0
        return out

    def _reply_request(self, messages: list[dict[str, Any]], **kw: Any) -> ChatRequest:
        return ChatRequest(
            messages=messages,
            max_tokens=self.opt.reply_max_tokens,
            temperature=self.opt.reply_temperature,
            **kw,
        )

    # ---- phase 1: the context chain ------------------------------------------------------------
    def _chains(self, convs: list[Conversation]) -> dict[str, list[Any]]:
        """Per conversation, the reply messages for each turn that a context or the prompt
        method needs: a list (per turn) of message lists, or an error string."""
        opt = self.opt
        chains: dict[str, list[Any]] = {}
        if opt.replies == "keep":
            missing: list[tuple[Conversation, int]] = []
            for c in convs:
                chains[c.cid] = [t.replies for t in c.turns]
                if "prompt" in opt.methods:
                    for k in c.scored(opt.turns):
                        if not any(m["role"] == "assistant" for m in c.turns[k].replies):
                            missing.append((c, k))
            reqs = [self._reply_request(self._context(c, k, chains[c.cid])) for c, k in missing]
            for (c, k), res in zip(missing, self._gen("reply", reqs), strict=True):
                self._keep_generated[(c.cid, k)] = self._reply_entry(res)
            return chains
        # regenerate: turn by turn, every conversation's turn k in one batch.
        need = {}
        for c in convs:
            scored = c.scored(opt.turns)
            last = max(scored) if scored else -1
            need[c.cid] = last + 1 if "prompt" in opt.methods else last
            chains[c.cid] = []
        depth = max(need.values(), default=0)
        for k in range(depth):
            batch = [c for c in convs if need[c.cid] > k]
            todo, reqs = [], []
            for c in batch:
                chain = chains[c.cid]
                broken = next((e for e in chain if isinstance(e, str)), None)
                if broken is not None:
                    chain.append(broken if broken.startswith("earlier") else f"earlier {broken}")
                    continue
                todo.append(c)
                reqs.append(self._reply_request(self._context(c, k, chain)))
            for c, res in zip(todo, self._gen("reply", reqs), strict=True):
                chains[c.cid].append(self._reply_entry(res))
        return chains

    @staticmethod
    def _reply_entry(res: ChatResult) -> list[dict[str, str]] | str:
        if not res.ok:
            return f"reply failed: {res.error}"
        raw = res.text
        return [{"role": "assistant", "content": visible(raw), "raw": raw}]

    def _context(
        self, c: Conversation, k: int, chain: list[Any], with_fixed: bool = True
    ) -> list[dict[str, str]]:
        """Messages up to and including user turn k, with the chain's replies before it (and the
        ``--prefix`` messages after the system prompt, unless ``with_fixed`` is False)."""
        msgs = c.opening(with_fixed)
        for j in range(k):
            msgs.append(c.turns[j].user)
            msgs.extend(clean(chain[j]))
        msgs.append(c.turns[k].user)
        return clean(msgs)

    def run(self, convs: list[Conversation]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Detection rows and bail rows (before the optional false-bail flags)."""
        opt = self.opt
        t0 = time.perf_counter()
        chains = self._chains(convs)
        self.timings["chain_s"] = time.perf_counter() - t0
        cells = self._cells(convs, chains)
        self.rows = []
        by_cell: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}

        # string and tool: one batch
        st_reqs, st_meta = self._string_tool_requests(cells, chains, by_cell)
        t1 = time.perf_counter()
        order_rows: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
        prompt_jobs: list[tuple[Cell, str, list[dict[str, str]]]] = []
        if "prompt" in opt.methods:
            for cell in cells:
                if cell.reply_error:
                    for order in protocol.ORDERS:
                        r = self.add(cell, method="prompt", order=order, error=cell.reply_error)
                        order_rows.setdefault((cell.conv.cid, cell.k), {})[order] = r
                    continue
                ctx = self._context(cell.conv, cell.k, chains[cell.conv.cid])
                for order in protocol.ORDERS:
                    prompt_jobs.append((cell, order, ctx))
        for (cell, method), res in zip(st_meta, self._gen("string+tool", st_reqs), strict=True):
            by_cell.setdefault((cell.conv.cid, cell.k), {})[method] = self.add(
                cell, **self._string_tool_row(method, res)
            )
        self.timings["string_tool_s"] = time.perf_counter() - t1

        # prompt: probe, then both orders in one batch, then sampling where logprobs are missing
        t2 = time.perf_counter()
        if prompt_jobs:
            self._score_prompt(prompt_jobs, self.add, order_rows)
        self._both_rows(cells, order_rows, by_cell)
        self.timings["prompt_s"] = time.perf_counter() - t2

        if opt.journal:
            t3 = time.perf_counter()
            self._journals(prompt_jobs, order_rows, by_cell)
            self.timings["journal_s"] = time.perf_counter() - t3

        bails = self._bail_rows(cells, by_cell, chains)
        return self.rows, bails

    def add(self, cell: Cell, **row: Any) -> dict[str, Any]:
        """Append a detection row of ``cell`` (unset columns null) and return it."""
        base = dict.fromkeys(DETECTION_SCHEMA)
        base.update(conversation_id=cell.conv.cid, turn=cell.k + 1)
        base.update(prompt_tokens=0, completion_tokens=0)
        base.update(row)
        self.rows.append(base)
        return base

    def _cells(self, convs: list[Conversation], chains: dict[str, list[Any]]) -> list[Cell]:
        """The scored (conversation, turn) cells, with the reply the prompt method scores."""
        opt = self.opt
        cells: list[Cell] = []
        for c in convs:
            for k in c.scored(opt.turns):
                cell = Cell(c, k)
                chain = chains[c.cid]
                broken = next((e for e in chain[:k] if isinstance(e, str)), None)
                if broken is not None:
                    cell.context_error = broken if broken.startswith("earlier") else f"earlier {broken}"
                if "prompt" in opt.methods:
                    entry = self._keep_generated.get((c.cid, k), chain[k] if k < len(chain) else [])
                    if cell.context_error is not None:
                        cell.reply_error = cell.context_error
                    elif isinstance(entry, str):
                        cell.reply_error = entry
                    else:
                        cell.reply_msgs = entry
                        assistant = [m for m in entry if m["role"] == "assistant"]
                        raw = "\n\n".join(m.get("raw", m["content"]) for m in assistant)
                        cell.reply_raw = raw
                cells.append(cell)
        return cells

    def _string_tool_requests(
        self, cells: list[Cell], chains: dict[str, list[Any]], by_cell: dict
    ) -> tuple[list[ChatRequest], list[tuple[Cell, str]]]:
        """The string and tool methods' requests; cells with a broken context get error rows."""
        opt = self.opt
        st_reqs: list[ChatRequest] = []
        st_meta: list[tuple[Cell, str]] = []
        for cell in cells:
            for method in ("string", "tool"):
                if method not in opt.methods:
                    continue
                if cell.context_error:
                    key = (cell.conv.cid, cell.k)
                    by_cell.setdefault(key, {})[method] = self.add(
                        cell, method=method, error=cell.context_error
                    )
                    continue
                ctx = self._context(cell.conv, cell.k, chains[cell.conv.cid])
                if method == "string":
                    req = self._reply_request(protocol.with_bail_string(ctx, opt.model_label))
                else:
                    req = self._reply_request(ctx, tools=[protocol.bail_tool(opt.model_label)])
                st_reqs.append(req)
                st_meta.append((cell, method))
        return st_reqs, st_meta

    @staticmethod
    def _string_tool_row(method: str, res: ChatResult) -> dict[str, Any]:
        row: dict[str, Any] = dict(
            method=method,
            reply=res.text if res.ok else None,
            prompt_tokens=res.prompt_tokens,
            completion_tokens=res.completion_tokens,
            error=res.error,
        )
        if res.ok:
            ch = res.choices[0]
            if method == "string":
                bailed = scoring.said_bail_string(ch.text)
            else:
                bailed = scoring.called_bail_tool([t.name for t in ch.tool_calls], ch.text)
                if ch.tool_calls:
                    row["response"] = json.dumps(
                        [{"name": t.name, "arguments": t.arguments} for t in ch.tool_calls]
                    )
            row.update(p_bail=1.0 if bailed else 0.0, bailed=bailed, scoring="reply")
        return row

    def _both_rows(self, cells: list[Cell], order_rows: dict, by_cell: dict) -> None:
        """The prompt method's turn-level rows: the mean P(bail) of the two orders."""
        cell_of = {(c.conv.cid, c.k): c for c in cells}
        for (cid, k), orders in order_rows.items():
            cell_rows = [orders.get(o) for o in protocol.ORDERS]
            cell = cell_of[(cid, k)]
            errs = [r["error"] for r in cell_rows if r is None or r["error"]]
            if errs:
                both = self.add(cell, method="prompt", order="both", error=f"order failed: {errs[0]}")
            else:
                p = sum(r["p_bail"] for r in cell_rows) / len(cell_rows)  # type: ignore[index]
                both = self.add(
                    cell,
                    method="prompt",
                    order="both",
                    p_bail=p,
                    bailed=p > self.opt.threshold,
                    scoring=cell_rows[0]["scoring"],  # type: ignore[index]
                )
            both["reply"] = cell.reply_raw
            by_cell.setdefault((cid, k), {})["prompt"] = both

    # ---- phase 3: journals -------------------------------------------------------------------
    def _journals(self, jobs: list[Any], order_rows: dict[Any, Any], by_cell: dict) -> None:
        reqs, targets = [], []
        for cell, order, ctx in jobs:
            row = order_rows[(cell.conv.cid, cell.k)][order]
            if not row.get("bailed"):
                continue
            msgs = ctx + clean(cell.reply_msgs or [])
            msgs.append({"role": "user", "content": protocol.bail_prompt(order)})
            reqs.append(
                self._reply_request(msgs, prefill=protocol.JOURNAL_PREFILL)  # type: ignore[arg-type]
            )
            targets.append(row)
        for row, res in zip(targets, self._gen("journal", reqs), strict=True):
            row["prompt_tokens"] += res.prompt_tokens
            row["completion_tokens"] += res.completion_tokens
            if res.ok:
                row["journal"] = res.text.split("</journal>")[0].strip()
            else:
                self.journal_failures += 1
        for (cid, k), orders in order_rows.items():
            both = by_cell.get((cid, k), {}).get("prompt")
            if both is not None:
                both["journal"] = next(
                    (orders[o]["journal"] for o in protocol.ORDERS if orders.get(o, {}).get("journal")),
                    None,
                )

    # ---- bails -------------------------------------------------------------------------------
    def _bail_rows(self, cells: list[Cell], by_cell: dict, chains: dict) -> list[dict[str, Any]]:
        opt = self.opt
        out = []
        for cell in cells:
            rows = by_cell.get((cell.conv.cid, cell.k), {})
            bailed = [m for m in METHOD_PRIORITY if rows.get(m, {}).get("bailed")]
            if not bailed:
                continue
            first = bailed[0]
            row = rows[first]
            # the transcript leaves out the --prefix messages: the same for every row (summary.json)
            ctx = self._context(cell.conv, cell.k, chains[cell.conv.cid], with_fixed=False)
            if first == "prompt":
                transcript = ctx + clean(cell.reply_msgs or [])
            else:
                transcript = ctx + [{"role": "assistant", "content": visible(row["reply"] or "")}]
            cid = cell.conv.cid if opt.turns == "last" else f"{cell.conv.cid}#turn{cell.k + 1}"
            bail = dict(cell.conv.columns)
            bail.update(
                conversation_id=cid,
                source_conversation_id=cell.conv.cid,
                conversation=transcript,
                model=opt.model,
                bail_method=first,
                bail_methods=",".join(bailed),
                bail_turn=len(transcript) - 1,
                user_turn=cell.k + 1,
                bail_probability=float(row["p_bail"]),
                journal=row.get("journal"),
            )
            out.append(bail)
        return out
