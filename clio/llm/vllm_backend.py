"""The ``vllm`` back-end: an in-process vLLM offline engine (``vllm.LLM``) on the local GPU.

vLLM is imported when the back-end is built, never at module import, so the base install does not
need it (``pip install 'bailclio[vllm]'``). Requests go through ``LLM.chat`` (the model's chat
template) in batches grouped by the options that are per-call in vLLM (prefill, tools); each
request gets its own ``SamplingParams`` (``n``, ``seed``, ``max_tokens``, ``temperature``,
``logprobs``) and, when ``ChatRequest.json_schema`` is set and ``structured_output`` is on,
JSON-schema constrained decoding (``StructuredOutputsParams`` on recent vLLM,
``GuidedDecodingParams`` on older releases). Results are cached like the ``openai`` back-end.
Tool definitions are rendered into the prompt by the chat template; the offline engine does not
parse tool calls, so ``Choice.tool_calls`` stays empty and the raw text is returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bailclio.errors import UserError
from bailclio.llm.base import BackendStats, ChatRequest, ChatResult, Choice
from bailclio.llm.cache import LLMCache


def _json_constraint(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword for JSON-schema constrained decoding on this vLLM version."""
    try:
        from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams  # older vLLM

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


class VLLMBackend(BackendStats):
    """In-process vLLM engine behind the :class:`~bailclio.llm.base.LLMBackend` interface."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        cache: LLMCache | str | Path | None = None,
        max_calls: int | None = None,
        max_total_tokens: int | None = None,
        structured_output: bool = True,
        default_max_tokens: int = 512,
        default_temperature: float = 0.0,
        batch_size: int = 256,
        progress: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise UserError(
                "llm.backend = 'vllm' needs the vllm package (pip install 'bailclio[vllm]')"
            ) from exc
        self.model = model
        self.cache = LLMCache(cache) if isinstance(cache, str | Path) else cache
        self.max_calls = max_calls
        self.max_total_tokens = max_total_tokens
        self.structured_output = structured_output
        self.default_max_tokens = default_max_tokens
        self.default_temperature = default_temperature
        self.batch_size = max(1, batch_size)
        self.progress = progress
        self._init_stats()
        self.llm = vllm.LLM(model=model, **(engine_kwargs or {}))

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def _sampling_params(self, req: ChatRequest) -> Any:
        from vllm import SamplingParams

        kw: dict[str, Any] = {
            "n": req.n,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        }
        if req.top_logprobs is not None:
            kw["logprobs"] = max(1, req.top_logprobs)
        if req.json_schema is not None and self.structured_output:
            kw.update(_json_constraint(req.json_schema))
        return SamplingParams(**kw)

    def _budget_left(self, n_next: int) -> int:
        """How many of the next ``n_next`` calls the budget allows."""
        allowed = n_next
        if self.max_calls is not None:
            allowed = min(allowed, max(0, self.max_calls - int(self._stats["calls"])))
        used = self._stats["prompt_tokens"] + self._stats["completion_tokens"]
        if self.max_total_tokens is not None and used >= self.max_total_tokens:
            allowed = 0
        if allowed < n_next:
            self._budget_hit = True
        return allowed

    def generate(self, requests: list[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        keys = [r.cache_key(self.name, self.model) for r in requests]
        hits = self.cache.get_many(keys) if self.cache is not None else {}
        results: list[ChatResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in hits:
                results[i] = replace(hits[key], tag=requests[i].tag)
                self._stats["cache_hits"] += 1
            else:
                todo.setdefault(key, []).append(i)
        # Calls that share add_generation_prompt/continue_final_message/tools go together.
        groups: dict[tuple[bool, str], list[str]] = {}
        for key, idxs in todo.items():
            req = requests[idxs[0]]
            groups.setdefault((req.prefill is not None, repr(req.tools)), []).append(key)
        bar = tqdm(
            total=len(requests),
            initial=len(requests) - sum(map(len, todo.values())),
            desc=desc,
            unit="req",
            disable=not self.progress or not requests,
            leave=False,
        )
        try:
            for (prefill, _), group_keys in groups.items():
                for start in range(0, len(group_keys), self.batch_size):
                    chunk = group_keys[start : start + self.batch_size]
                    chunk = chunk[: self._budget_left(len(chunk))]
                    if not chunk:
                        break
                    self._run_chunk(requests, todo, chunk, prefill, results)
                    bar.update(sum(len(todo[k]) for k in chunk))
        finally:
            bar.close()
            self._stats["wall_s"] += time.perf_counter() - t0
        return self._finish(results, "budget")

    def _run_chunk(
        self,
        requests: list[ChatRequest],
        todo: dict[str, list[int]],
        chunk: list[str],
        prefill: bool,
        results: list[ChatResult | None],
    ) -> None:
        reqs = [requests[todo[k][0]] for k in chunk]
        conversations = []
        for req in reqs:
            msgs = [dict(m) for m in req.messages]
            if req.prefill is not None:
                msgs.append({"role": "assistant", "content": req.prefill})
            conversations.append(msgs)
        self._stats["calls"] += len(reqs)
        try:
            outputs = self.llm.chat(
                conversations,
                sampling_params=[self._sampling_params(r) for r in reqs],
                add_generation_prompt=not prefill,
                continue_final_message=prefill,
                tools=reqs[0].tools,
                use_tqdm=False,
            )
        except Exception as exc:  # one bad batch must not end the run
            err = f"vllm error: {type(exc).__name__}: {str(exc)[:160]}"
            for k in chunk:
                for i in todo[k]:
                    results[i] = ChatResult(error=err, tag=requests[i].tag)
            return
        for key, req, out in zip(chunk, reqs, outputs, strict=True):
            res = _to_result(out, req.top_logprobs)
            self._stats["prompt_tokens"] += res.prompt_tokens
            self._stats["completion_tokens"] += res.completion_tokens
            if self.cache is not None:
                self.cache.put(key, res)
            for i in todo[key]:
                results[i] = replace(res, tag=requests[i].tag)


def _merge_alternatives(ranked: list[Any]) -> dict[str, float]:
    """``{token text: logprob}`` of one position's alternatives. Different tokens decoded to the
    same text (every byte piece that does not complete a character decodes to ``""``) are
    combined with logsumexp, as in the ``openai`` back-end: their probabilities add up."""
    alts: dict[str, float] = {}
    for lp in ranked:
        text, value = lp.decoded_token or "", float(lp.logprob)
        old = alts.get(text)
        if old is None:
            alts[text] = value
        else:
            hi = max(old, value)
            alts[text] = hi + math.log(math.exp(old - hi) + math.exp(value - hi))
    return alts


def _to_result(out: Any, top_k: int | None) -> ChatResult:
    """A vLLM ``RequestOutput`` as a :class:`ChatResult`."""
    choices = []
    completion_tokens = 0
    for comp in out.outputs:
        choice = Choice(text=comp.text, finish_reason=comp.finish_reason)
        completion_tokens += len(comp.token_ids)
        if top_k is not None and comp.logprobs is not None:
            choice.top_logprobs, choice.tokens, choice.token_logprobs = [], [], []
            for token_id, position in zip(comp.token_ids, comp.logprobs, strict=False):
                ranked = sorted(position.values(), key=lambda lp: lp.rank or 0)
                alts = _merge_alternatives(ranked[: max(top_k, 1)])
                sampled = position.get(token_id)
                if sampled is not None:
                    alts.setdefault(sampled.decoded_token or "", float(sampled.logprob))
                    choice.tokens.append(sampled.decoded_token or "")
                    choice.token_logprobs.append(float(sampled.logprob))
                choice.top_logprobs.append(alts)
        choices.append(choice)
    return ChatResult(
        choices=choices,
        prompt_tokens=len(out.prompt_token_ids or []),
        completion_tokens=completion_tokens,
    )
