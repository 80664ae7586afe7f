"""The Ray engine of a sampled run: embedding and placement as a Ray Data pipeline.

``[scale] engine = "ray"`` (``--engine ray``, the ``ray`` extra) runs the place step of
:mod:`bailclio.scale` as ``read_parquet -> map_batches(RayPlacer, actor pool) -> write_parquet``
over the rows to place, which the run streams to Parquet under its directory. Each actor loads the
embedding model once and holds the fitted run's reference (shipped once through the object store),
and calls the same :class:`bailclio.placer.Placer` as the local engine, so the two engines give the
same assignments for the same vectors. Ray restarts an actor that dies and retries its batch
(Ray Data's actor defaults: ``max_restarts=-1``, ``max_task_retries=-1``); every output row
carries its row number, and the run refuses to finish unless each row was placed exactly once.

Where: ``[scale] ray_address`` (``--ray-address``), else ``RAY_ADDRESS``, else a local Ray
instance started for the run. On a cluster the run directory must be on storage every node sees,
and every node needs bailclio installed (the same environment, or a ``runtime_env``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bailclio.config import Config
from bailclio.errors import UserError
from bailclio.placer import Placer, PlacerState, placed_table

PASSED_ENV = ("BAILCLIO_CACHE_DIR", "NUMBA_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UserError("engine 'ray' needs Ray Data: pip install 'bailclio[ray]'") from exc
    return ray


def connect(cfg: Config) -> Any:
    """The Ray module, connected to ``scale.ray_address`` / ``RAY_ADDRESS`` or a local instance."""
    ray = _ray()
    if not ray.is_initialized():
        address = cfg.scale.ray_address or os.environ.get("RAY_ADDRESS") or None
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env["TOKENIZERS_PARALLELISM"] = "false"
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot connect to Ray at {address or 'a local instance'}: {exc}") from exc
    return ray


class RayPlacer:
    """A Ray Data actor: ``batch`` (``row``, ``text``) -> the placed batch (:func:`placed_table`)."""

    def __init__(self, state: Any) -> None:
        import ray

        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)
        threads = int(float(os.environ.get("OMP_NUM_THREADS") or 1))
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except ImportError:
            pass
        self.placer = Placer(state)

    def __call__(self, batch: Any) -> Any:
        rows = batch.column("row").to_numpy()
        texts = batch.column("text").to_pylist()
        return placed_table(rows, self.placer(texts)).append_column("fitted", _bools(False, len(texts)))


def _bools(value: bool, n: int) -> Any:
    import pyarrow as pa

    return pa.array([value] * n, type=pa.bool_())


def place_with_ray(
    todo_dir: Path,
    placed_dir: Path,
    state: PlacerState,
    cfg: Config,
    *,
    progress: bool = True,
    actor_cls: type = RayPlacer,
) -> dict[str, Any]:
    """Place the rows in ``todo_dir``'s Parquet files into ``placed_dir/ray``; returns stats."""
    files = sorted(str(p) for p in Path(todo_dir).glob("*.parquet"))
    if not files:
        return {"engine": "ray", "texts": 0}
    started = not _ray().is_initialized()  # a local instance started here is stopped at the end
    ray = connect(cfg)
    try:
        return _run(ray, files, placed_dir, state, cfg, progress, actor_cls)
    finally:
        if started:
            ray.shutdown()


def _run(
    ray: Any,
    files: list[str],
    placed_dir: Path,
    state: PlacerState,
    cfg: Config,
    progress: bool,
    actor_cls: type,
) -> dict[str, Any]:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    # one CPU stays free for the read and write tasks (all CPUs to actors deadlocks the pipeline)
    actors = cfg.scale.ray_actors or max(1, gpus or int(resources.get("CPU", 2)) - 1)
    per_actor = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    state_ref = ray.put(state)  # held until the pipeline ends, so a restarted actor finds it
    ds = ray.data.read_parquet(files)
    ds = ds.map_batches(
        actor_cls,
        fn_constructor_kwargs={"state": state_ref},
        batch_size=cfg.scale.ray_batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **per_actor,
    )
    out = Path(placed_dir) / "ray"
    ds.write_parquet(str(out))
    n = sum(1 for _ in out.glob("*.parquet"))
    return {"engine": "ray", "actors": actors, "gpus": gpus, "output_files": n}
