"""The bail-prompt method's scoring: logprobs, sampling, and sequence scoring (see
:mod:`bailclio.detect.runner` for the call model and :mod:`bailclio.detect.scoring` for the rules).

:class:`PromptScoring` is a base of :class:`bailclio.detect.detector.Detector`; it uses the
detector's options (``opt``) and its counted back-end call (``_gen``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bailclio.detect import protocol, scoring
from bailclio.detect.conversations import Cell
from bailclio.detect.options import DetectOptions
from bailclio.llm.base import ChatRequest, ChatResult


def clean(msgs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Messages with only their role and content (the ``raw`` reply text left out)."""
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


class PromptScoring:
    """P(bail) of the prompt method for each (cell, order, context) job."""

    opt: DetectOptions
    scoring_mode: str | None
    _sequence_ok: bool | None  # does the server return prompt logprobs?
    _gen: Callable[[str, list[ChatRequest]], list[ChatResult]]

    # ---- phase 2: the methods ----------------------------------------------------------------
    def _prompt_request(self, cell: Cell, ctx: list[dict[str, str]], order: str, mode: str):
        msgs = ctx + clean(cell.reply_msgs or [])
        msgs.append({"role": "user", "content": protocol.bail_prompt(order)})  # type: ignore[arg-type]
        if mode == "logprobs":
            return ChatRequest(
                messages=msgs,
                max_tokens=6,
                temperature=0.0,
                top_logprobs=self.opt.top_logprobs,
                prefill=protocol.PREFILL,
            )
        return ChatRequest(
            messages=msgs,
            max_tokens=12,
            temperature=self.opt.sample_temperature,
            n=self.opt.samples,
            seed=self.opt.seed,
            prefill=protocol.PREFILL,
        )

    def _sequence_requests(self, cell: Cell, ctx: list[dict[str, str]], order: str):
        """The two sequence-scoring requests of one order: 🔄 prefilled, then 🟢."""
        msgs = ctx + clean(cell.reply_msgs or [])
        msgs.append({"role": "user", "content": protocol.bail_prompt(order)})  # type: ignore[arg-type]
        return [
            ChatRequest(
                messages=msgs,
                max_tokens=1,
                temperature=0.0,
                prefill=protocol.PREFILL + symbol,
                prompt_logprobs=0,
            )
            for symbol in (protocol.BAIL_SYMBOL, protocol.CONTINUE_SYMBOL)
        ]

    def _score_sequences(
        self, jobs: list[Any], idxs: list[int], outcome: list[dict], auto: bool = False
    ) -> None:
        """Sequence scoring of ``jobs[i]`` for ``i`` in ``idxs``, updating ``outcome[i]``. With
        ``auto``, the first order finds out whether the server returns prompt logprobs, and rows
        it cannot rescore keep their logprobs result."""
        if auto and self._sequence_ok is None and len(idxs) > 1:
            self._score_sequences(jobs, idxs[:1], outcome, auto=True)  # the probe
            idxs = idxs[1:]
        if auto and self._sequence_ok is False:
            return
        reqs = [r for i in idxs for r in self._sequence_requests(jobs[i][0], jobs[i][2], jobs[i][1])]
        results = self._gen("prompt-sequence", reqs)
        for n, i in enumerate(idxs):
            ra, rb = results[2 * n], results[2 * n + 1]
            row = outcome[i]
            row["prompt_tokens"] = (row.get("prompt_tokens") or 0) + ra.prompt_tokens + rb.prompt_tokens
            row["completion_tokens"] = (
                (row.get("completion_tokens") or 0) + ra.completion_tokens + rb.completion_tokens
            )
            failed = ra.error or rb.error
            if failed is None and (ra.prompt_logprobs is None or rb.prompt_logprobs is None):
                failed = "the server returned no prompt_logprobs"
                self._sequence_ok = False
            got = None
            if failed is None:
                self._sequence_ok = True
                got = scoring.p_bail_from_sequences(ra.prompt_logprobs, rb.prompt_logprobs)
                if got is None:
                    failed = "the two prompts do not differ"
            if got is None:
                if not auto:
                    row.update(p_bail=None, error=f"sequence scoring: {failed}")
                continue
            p, la, lb = got
            response: dict[str, Any] = {protocol.BAIL_SYMBOL: la, protocol.CONTINUE_SYMBOL: lb}
            if row.get("response") is not None:  # auto: the greedy continuation it replaces
                response["greedy"] = row["response"]
            row.update(
                p_bail=p,
                scoring="sequence",
                error=None,
                response=json.dumps(response, ensure_ascii=False),
            )

    def _score_prompt(self, jobs: list[Any], add: Any, order_rows: dict[Any, Any]) -> None:
        opt = self.opt
        mode = opt.scoring
        if mode == "auto":
            cell, order, ctx = jobs[0]
            probe = self._gen("prompt", [self._prompt_request(cell, ctx, order, "logprobs")])[0]
            has_lp = probe.ok and bool(probe.choices and probe.choices[0].top_logprobs)
            mode = "logprobs" if has_lp or not probe.ok else "samples"
        self.scoring_mode = mode
        if mode == "sequence":
            outcome = [
                dict(method="prompt", order=order, reply=cell.reply_raw, prompt_tokens=0,
                     completion_tokens=0, error=None)
                for cell, order, _ctx in jobs
            ]  # fmt: skip
            self._score_sequences(jobs, list(range(len(jobs))), outcome)
            self._add_order_rows(jobs, outcome, add, order_rows)
            return
        reqs = [self._prompt_request(cell, ctx, order, mode) for cell, order, ctx in jobs]
        results = self._gen("prompt", reqs)
        outcome = []
        fallback: list[int] = []
        unreadable: list[int] = []
        sampled: dict[int, list[str]] = {}
        for i, ((cell, order, _ctx), res) in enumerate(zip(jobs, results, strict=True)):
            row: dict[str, Any] = dict(
                method="prompt",
                order=order,
                reply=cell.reply_raw,
                prompt_tokens=res.prompt_tokens,
                completion_tokens=res.completion_tokens,
                error=res.error,
            )
            if res.ok and mode == "logprobs":
                ch = res.choices[0]
                row["response"] = ch.text
                if ch.top_logprobs:
                    if opt.scoring == "auto" and scoring.has_undecodable_alternatives(
                        ch.top_logprobs, ch.tokens
                    ):
                        unreadable.append(i)
                    p = scoring.p_bail_from_logprobs(ch.top_logprobs, ch.tokens)
                    if p is None:  # neither symbol among the alternatives: read the greedy text
                        sym = scoring.sampled_symbol(ch.text)
                        p = None if sym is None else float(sym == scoring.BAIL)
                    if p is None:
                        row["error"] = "no wellbeing symbol in the reply or its top_logprobs"
                    else:
                        row.update(p_bail=p, scoring="logprobs")
                else:
                    fallback.append(i)
            elif res.ok:
                sampled[i] = [ch.text for ch in res.choices]
                row.update(self._from_samples(sampled[i]))
                if len(res.choices) < opt.samples:
                    fallback.append(i)
            outcome.append(row)
        if fallback:
            self._sample_fallback(jobs, fallback, outcome, sampled)
        if unreadable:
            self._score_sequences(jobs, unreadable, outcome, auto=True)
        self._add_order_rows(jobs, outcome, add, order_rows)

    def _add_order_rows(
        self, jobs: list[Any], outcome: list[dict[str, Any]], add: Any, order_rows: dict[Any, Any]
    ) -> None:
        opt = self.opt
        for (cell, order, _ctx), row in zip(jobs, outcome, strict=True):
            if row.get("p_bail") is not None and not row.get("error"):
                row["bailed"] = row["p_bail"] > opt.threshold
            order_rows.setdefault((cell.conv.cid, cell.k), {})[order] = add(cell, **row)

    def _from_samples(self, texts: list[str]) -> dict[str, Any]:
        p, nb, nc = scoring.p_bail_from_samples(texts)
        out: dict[str, Any] = {"response": json.dumps(texts, ensure_ascii=False)}
        if p is None:
            out["error"] = f"no wellbeing symbol in {len(texts)} samples"
        else:
            out.update(p_bail=p, scoring=f"samples {nb}/{nb + nc}", error=None)
        return out

    def _sample_fallback(
        self, jobs: list[Any], idxs: list[int], outcome: list[dict], sampled: dict[int, list[str]]
    ) -> None:
        """Sampling for prompt requests that came back without logprobs, or with fewer samples
        than asked for (servers without ``n``): single-sample calls with fixed seeds."""
        opt = self.opt
        reqs: list[ChatRequest] = []
        owner: list[int] = []
        for i in idxs:
            cell, order, ctx = jobs[i]
            base = self._prompt_request(cell, ctx, order, "samples")
            if i not in sampled:  # came back without logprobs: ask for all samples at once
                reqs.append(base)
                owner.append(i)
                continue
            for s in range(len(sampled[i]), opt.samples):
                reqs.append(replace(base, n=1, seed=opt.seed + 1 + s))
                owner.append(i)
        texts: dict[int, list[str]] = {i: list(sampled.get(i, [])) for i in idxs}
        errors: dict[int, str] = {}
        tokens: dict[int, list[int]] = {i: [0, 0] for i in idxs}
        for i, res in zip(owner, self._gen("prompt-samples", reqs), strict=True):
            tokens[i][0] += res.prompt_tokens
            tokens[i][1] += res.completion_tokens
            if res.ok:
                texts[i].extend(ch.text for ch in res.choices)
            else:
                errors.setdefault(i, str(res.error))
        for i in idxs:
            row = outcome[i]
            row["prompt_tokens"] += tokens[i][0]
            row["completion_tokens"] += tokens[i][1]
            if texts[i]:
                row.update(self._from_samples(texts[i]))
            else:
                row["error"] = errors.get(i, "no samples returned")
