"""Once per sweep, before any trial: load (and pack) the data, and pretrain the shared backbone if trials need one.

Where it runs (:class:`Preparation`): when the driver starts a local Ray itself (and the preparation needs no GPU),
in a driver thread while Ray starts -- it is the same machine, and Ray's start-up mostly waits; on a cluster, as one
Ray task on a worker node, so the driver does not hold the images. Either way:

* ``data_sharing: object_store`` -- the task returns the domains; they stay in Ray's object store and every trial
  gets them from there (``tune.with_parameters``) instead of reading and decoding files.
* ``data_sharing: cache`` -- the task only builds the packed uint8 cache (``bap.data``); trials on this node read
  it back in seconds. Use this for the full Decathlon, whose images are too big to copy into every trial process.

If the fixed training settings ask for a pretrained backbone that is not given (``pretrain_epochs > 0`` and
``pretrained: null``), the task pretrains it once (``bap.pretrain``, cached by its settings) and the sweep passes its
path -- and its bytes, for nodes that do not share the cache folder -- to every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from bap.entrypoint import has_prepare, load_entrypoint


def prepare(entrypoint: str, train: Mapping[str, Any], searched: list[str], keep_data: bool) -> dict[str, Any]:
    """Load the data once and pretrain the backbone if needed.

    Args:
        entrypoint: the training module (``bap.train``); a module with its own ``prepare(train, keep_data)``
            (tests, the benchmark) is delegated to.
        train: the fixed training values (with data, domains and cache_dir).
        searched: names of the searched TrainConfig fields.
        keep_data: return the domains (object-store sharing) or only build the cache.

    Returns:
        ``{"data": domains or None, "domains": [...], "pretrained": path or None, "backbone_bytes": bytes or None}``
    """
    module = load_entrypoint(entrypoint)
    if has_prepare(module):
        return module.prepare(dict(train), keep_data)  # type: ignore[attr-defined]

    from bap.config import BACKBONE_FIELDS
    from bap.data import load_data

    config = module.TrainConfig.from_dict(dict(train))
    data = load_data(config.data, config.domains, cache_dir=config.cache_dir, size=config.image_size,
                     crop=config.crop)
    out: dict[str, Any] = {"data": data if keep_data else None, "domains": list(data), "pretrained": None,
                           "backbone_bytes": None}
    if config.needs_pretraining and not set(searched) & set(BACKBONE_FIELDS):  # else each trial pretrains its own
        from bap.pretrain import ensure_backbone

        path = ensure_backbone(config, data, log=False)
        out["pretrained"] = str(path)
        out["backbone_bytes"] = Path(path).read_bytes()
    return out


def prepare_split(entrypoint: str, train: Mapping[str, Any], searched: list[str],
                  keep_data: bool) -> tuple[Any, dict[str, Any], bytes | None]:
    """:func:`prepare` as three values (a Ray task with ``num_returns=3``): the domains stay in the object store
    and the driver fetches only the small middle part."""
    out = prepare(entrypoint, train, searched, keep_data)
    info = {k: v for k, v in out.items() if k not in ("data", "backbone_bytes")}
    return out.get("data"), info, out.get("backbone_bytes")


def check_train_values(entrypoint: str, train: Mapping[str, Any], variants: list[dict[str, Any]],
                       data_spec: str | None, domains: list[str] | None) -> list[str]:
    """Validate fixed values, every search-space extreme and the domain names; return the data's domain list.

    Raises ValueError (bad field/value, with the allowed values) or KeyError (unknown domain).
    """
    module = load_entrypoint(entrypoint)
    module.TrainConfig.from_dict(dict(train))
    for variant in variants:
        values = {**train, **variant}
        try:
            module.TrainConfig.from_dict(values)
        except ValueError as exc:
            raise ValueError(f"search space value {variant} is invalid: {exc}") from None
    pretrained = train.get("pretrained")
    if pretrained and not Path(str(pretrained)).expanduser().is_file():
        raise ValueError(f"pretrained: {pretrained} is not a file (every trial reads the backbone weights from this "
                         "path: give a local file, on a folder the cluster's nodes share)")
    available = list(module.available_domains(data_spec))
    if domains:
        unknown = [d for d in domains if d not in available]
        if unknown:
            raise KeyError(f"unknown domain(s) {', '.join(unknown)}; {data_spec} has: {', '.join(available)}")
    if not available:
        raise KeyError(f"no domain found in {data_spec}")
    return available


class PreparationError(RuntimeError):
    """The sweep's data could not be prepared (nothing was launched; the MLflow parent run ended FAILED)."""

    @classmethod
    def from_exception(cls, exc: BaseException) -> PreparationError:
        cause = getattr(exc, "cause", None) or exc  # a Ray task's error carries the original one
        lines = str(cause).strip().splitlines()
        return cls(f"data preparation failed: {type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": "))


class Preparation:
    """The sweep's one :func:`prepare`, started early; :meth:`result` waits for it.

    ``start_here(executor)`` runs it as a future of the driver's set-up pool (a local Ray: before ``ray.init``, so
    the two overlap), ``start_remote()`` as a Ray task (after ``ray.init``). :meth:`result` returns ``(data ref,
    info, backbone ref)`` with the domains and the backbone bytes in Ray's object store, and raises what the
    preparation raised.
    """

    def __init__(self, entrypoint: str, train: Mapping[str, Any], searched: list[str], keep_data: bool) -> None:
        self.args = (entrypoint, dict(train), list(searched), keep_data)
        self._future: Future[tuple[Any, dict[str, Any], bytes | None]] | None = None
        self._refs: tuple[Any, Any, Any] | None = None

    @property
    def started(self) -> bool:
        return self._future is not None or self._refs is not None

    def start_here(self, executor: Executor) -> None:
        self._future = executor.submit(prepare_split, *self.args)

    def start_remote(self, num_gpus: float = 0.0) -> None:
        import ray

        task = ray.remote(prepare_split).options(num_cpus=1, num_gpus=num_gpus, num_returns=3)
        self._refs = task.remote(*self.args)

    def result(self) -> tuple[Any, dict[str, Any], Any]:
        import ray

        if self._refs is not None:
            data_ref, info_ref, backbone_ref = self._refs
            return data_ref, ray.get(info_ref), backbone_ref
        if self._future is None:
            raise RuntimeError("Preparation.result() before start_here() or start_remote()")
        data, info, backbone = self._future.result()
        return ray.put(data), info, (ray.put(backbone) if backbone is not None else None)
