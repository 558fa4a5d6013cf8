"""``bap`` loads its names lazily: light imports stay torch-free, and the public names behave as before."""

from __future__ import annotations

import subprocess
import sys

import bap


def test_metrics_and_the_analysis_import_without_torch():
    code = "import sys, bap.metrics, analysis.report; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_exported_names_and_submodules_resolve():
    from bap import MultiDomainResNet26, decathlon_score

    assert MultiDomainResNet26.__module__ == "bap.model" and decathlon_score.__module__ == "bap.score"
    assert bap.model.__name__ == "bap.model"  # submodules as attributes, as with the eager imports
    assert set(bap.__all__) <= set(dir(bap))


def test_prune_stays_the_function_and_can_be_patched(monkeypatch):
    import bap.prune  # noqa: F401  (importing the submodule must not rebind bap.prune)

    assert callable(bap.prune) and bap.prune.__module__ == "bap.prune"

    def fake(model):
        return model

    monkeypatch.setattr(bap, "prune", fake)
    assert bap.prune is fake
    monkeypatch.undo()
    assert bap.prune.__module__ == "bap.prune"
