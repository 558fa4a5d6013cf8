"""A sweep's own local Ray, without the two head services a sweep never uses.

Besides the GCS, the raylet and its agents, ``ray.init()`` starts on a new local Ray:

* the dashboard's API server. With ``include_dashboard=False`` it only reports usage statistics, yet ``ray.init``
  waits for it to come up before it starts the raylet, and it imports the whole dashboard stack to do so;
* the autoscaler monitor. A local Ray has a fixed size, so there is nothing to scale; at ``ray.shutdown`` it
  outlives SIGTERM for a second until Ray kills it.

Measured on 2 cores: a bare ``ray.init`` 1.9-2.0 s instead of 2.8-3.9 s, ``ray.shutdown`` 0.3 s instead of 1.4 s,
and ~1.5 s less CPU while the trial workers import torch (in a sweep: ``bench/RESULTS.md``, fifth pass). Ray has no
switch for either (the API server always starts; the monitor's ``no_monitor`` is not a ``ray.init`` argument), so
:func:`lean_head` replaces the two ``Node`` methods that start them for the duration of the driver's own
``ray.init``. A Ray without those methods is left as it is. A Ray that ``ray start`` or a cluster launcher started
is never changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

# ray._private.node.Node methods that start the services above.
SKIPPED_SERVICES = ("start_api_server", "start_monitor")


def _not_started(*args: Any, **kwargs: Any) -> None:
    return None


def _ray_node_class() -> Any:
    try:
        from ray._private.node import Node
    except ImportError:
        return None
    return Node


@contextlib.contextmanager
def lean_head(node_class: Any = None) -> Iterator[bool]:
    """Around a local ``ray.init``: the head starts without the dashboard API server and the autoscaler monitor.
    Yields whether it could (False: ``node_class``, by default Ray's ``Node``, lacks those methods)."""
    node_class = _ray_node_class() if node_class is None else node_class
    saved = {name: getattr(node_class, name, None) for name in SKIPPED_SERVICES}
    if node_class is None or not all(callable(method) for method in saved.values()):
        yield False
        return
    for name in SKIPPED_SERVICES:
        setattr(node_class, name, _not_started)
    try:
        yield True
    finally:
        for name, method in saved.items():
            setattr(node_class, name, method)
