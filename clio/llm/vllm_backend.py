"""The ``vllm`` back-end: an in-process vLLM offline engine (``vllm.LLM``) on the local GPU.

vLLM is imported when the back-end is built, never at module import, so the base install does not
need it (``pip install 'bailclio[vllm]'``). Requests go through ``LLM.chat`` (the model's chat
template) in batches grouped by the options that are per-call in vLLM (prefill, tools); each
request gets its own ``SamplingParams`` (``n``, ``seed``, ``max_tokens``, ``temperature``,
``logprobs``) and, when ``ChatRequest.json_schema`` is set and ``structured_output`` is on,
JSON-schema constrained decoding (``StructuredOutputsParams`` on recent vLLM,
``GuidedDecodingParams`` on older releases). This module is the transport
(:class:`VLLMTransport`); the cache, dedupe, budget, counters and progress are the shared
wrapper's (:class:`bailclio.llm.backend.Backend`), as for the ``openai`` back-end.
Tool definitions are rendered into the prompt by the chat template; the offline engine does not
parse tool calls, so ``Choice.tool_calls`` stays empty and the raw text is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bailclio.errors import UserError
from bailclio.llm.backend import Backend, wrapper_settings
from bailclio.llm.base import ChatRequest, ChatResult, Choice, Meter, merge_logprobs
from bailclio.llm.cache import LLMCache

if TYPE_CHECKING:
    from bailclio.config import LLMConfig


def _json_constraint(schema: dict[str, Any]) -> dict[str, Any]:
    """SamplingParams keyword for JSON-schema constrained decoding on this vLLM version."""
    try:
        from vllm.sampling_params import StructuredOutputsParams  # vLLM >= 0.11

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams  # older vLLM

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


class VLLMTransport:
    """Calls to an in-process ``vllm.LLM`` engine, in batches of at most ``batch_size``."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        structured_output: bool = True,
        batch_size: int = 256,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            import vllm  # optional and heavy: only when this back-end is built
        except ImportError as exc:
            raise UserError(
                "llm.backend = 'vllm' needs the vllm package (pip install 'bailclio[vllm]')"
            ) from exc
        self.model = model
        self.structured_output = structured_output
        self.batch_size = max(1, batch_size)
        self.llm = vllm.LLM(model=model, **(engine_kwargs or {}))

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def _sampling_params(self, req: ChatRequest) -> Any:
        from vllm import SamplingParams  # optional: vllm is imported with the engine

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

    def send(
        self, requests: list[ChatRequest], meter: Meter, done: Callable[[int, ChatResult], None]
    ) -> None:
        # Calls that share add_generation_prompt/continue_final_message/tools go together.
        groups: dict[tuple[bool, str], list[int]] = {}
        for j, req in enumerate(requests):
            groups.setdefault((req.prefill is not None, repr(req.tools)), []).append(j)
        for (prefill, _), members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                chunk = chunk[: meter.allow(len(chunk))]
                if not chunk:
                    break
                reqs = [requests[j] for j in chunk]
                for j, res in zip(chunk, self._run_chunk(reqs, prefill), strict=True):
                    if res.ok:
                        meter.spend(res)
                    done(j, res)

    def _run_chunk(self, reqs: list[ChatRequest], prefill: bool) -> list[ChatResult]:
        conversations = []
        for req in reqs:
            msgs = [dict(m) for m in req.messages]
            if req.prefill is not None:
                msgs.append({"role": "assistant", "content": req.prefill})
            conversations.append(msgs)
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
            return [ChatResult(error=err) for _ in reqs]
        return [_to_result(out, req.top_logprobs) for req, out in zip(reqs, outputs, strict=True)]


class VLLMBackend(Backend):
    """The ``vllm`` back-end: :class:`VLLMTransport` behind the shared cache, dedupe, budget,
    counters and progress."""

    transport: VLLMTransport

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
        transport = VLLMTransport(
            model, structured_output=structured_output, batch_size=batch_size, engine_kwargs=engine_kwargs
        )
        super().__init__(
            transport,
            cache=cache,
            max_calls=max_calls,
            max_total_tokens=max_total_tokens,
            default_max_tokens=default_max_tokens,
            default_temperature=default_temperature,
            progress=progress,
        )

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM`` engine."""
        return self.transport.llm


def from_config(cfg: LLMConfig, cache: str | Path | None, *, progress: bool = True) -> VLLMBackend:
    """The ``vllm`` back-end as ``[llm]`` configures it (the registry's factory)."""
    assert cfg.model is not None
    return VLLMBackend(
        cfg.model,
        cache=cache,
        progress=progress,
        **wrapper_settings(cfg),
        structured_output=cfg.structured_output,
        engine_kwargs=dict(cfg.vllm_engine) or None,
    )


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
                alts = merge_logprobs(
                    (lp.decoded_token or "", float(lp.logprob)) for lp in ranked[: max(top_k, 1)]
                )
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
