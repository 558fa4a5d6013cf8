"""One domain as a plain single-domain network (bap.export): same outputs, same counts, files that run without bap.

A tiny ResNet-26 at 32 px and random-weight torchvision ResNet-18 / ResNet-50 at 40 px, each domain with its own
random switches and BN statistics calibrated under them (:func:`tests.bap.helpers.calibrate_norms`). The exported
files are run by onnxruntime and ``torch.jit.load`` here, and once in a subprocess where ``import bap`` fails. The
ONNX tests need the ``export`` extra (``pip install -e .[export]``, part of ``make install``).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import math
import subprocess
import sys
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bap import Cost, count_cost, count_layer_costs, from_torchvision, load_pruned, prune, save_pruned
from bap.blocks import ZeroPadShortcut
from bap.export import (
    EXPORT_FORMATS,
    PlainBlock,
    SlicedConv2d,
    ZeroConv2d,
    export_domain,
    single_domain_module,
)
from bap.network import MultiDomainNetwork
from tests.bap.helpers import calibrate_norms, random_switches, tiny_model

try:
    import onnx
    import onnxruntime
    from onnx import numpy_helper
except ImportError:  # only the TorchScript and plain-module tests run
    onnx = onnxruntime = numpy_helper = None  # type: ignore[assignment]
requires_onnx = pytest.mark.skipif(onnx is None or onnxruntime is None,
                                   reason="needs the export extra: pip install -e .[export]")

ARCHS = ["resnet26", "resnet18", "resnet50"]
DOMAINS = {"a": 7, "b": 3, "c": 5}
BATCHES = (1, 3, 5)
TOLERANCE = 1e-4
# what a single-domain module may be made of: plain layers, the parameter-free shortcut, the two helpers
PLAIN = (nn.Sequential, PlainBlock, nn.Conv2d, ZeroConv2d, nn.BatchNorm2d, nn.Linear, nn.ReLU, nn.MaxPool2d,
         nn.AdaptiveAvgPool2d, nn.Flatten, nn.Identity, ZeroPadShortcut)


@pytest.fixture(scope="module", autouse=True)
def _one_thread_and_cleanup():
    """Many small convolutions: one thread is about as fast on two free cores, and several times faster when the
    cores are shared (OpenMP's and onnxruntime's threads spin-wait: 13 s against 60 s for the ResNet-50 here).
    The models built for this module are dropped after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    _models.cache_clear()
    _EXPECTED.clear()


def _session(path_or_bytes: str | bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def _size(arch: str) -> tuple[int, int, int]:
    return (3, 32, 32) if arch == "resnet26" else (3, 40, 40)


@functools.cache
def _models(arch: str) -> tuple[MultiDomainNetwork, MultiDomainNetwork]:
    """The switched model (every domain with its own random switches, calibrated BNs) and its pruned copy."""
    if arch == "resnet26":
        model: MultiDomainNetwork = tiny_model(DOMAINS)
    else:
        torch.manual_seed(0)
        model = from_torchvision(arch, DOMAINS)
    generator = torch.Generator().manual_seed(1)
    p_on = 0.3 if arch == "resnet50" else 0.5  # a smaller ResNet-50 domain: files of ~10 MB, not ~30
    for domain in model.domains:
        model.set_switch_state(domain, random_switches(model, domain, p_on, generator))
    calibrate_norms(model, _size(arch))
    return model, prune(model).eval()


@functools.cache
def _inputs(size: tuple[int, int, int]) -> dict[int, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return {b: torch.randn(b, *size, generator=generator) for b in BATCHES}


_EXPECTED: weakref.WeakKeyDictionary[MultiDomainNetwork, dict[str, dict[int, np.ndarray]]] = (
    weakref.WeakKeyDictionary())


def _expected(model: MultiDomainNetwork, domain: str, size: tuple[int, int, int]) -> dict[int, np.ndarray]:
    """``model(x, domain)`` of every input batch, from one pass over all of them (eval: each image on its own),
    computed once per model and domain."""
    per_domain = _EXPECTED.setdefault(model, {})
    if domain not in per_domain:
        inputs = _inputs(size)
        with torch.no_grad():
            logits = model(torch.cat(list(inputs.values())), domain).numpy()
        bounds = np.cumsum([0, *inputs])
        per_domain[domain] = {b: logits[start:end] for b, start, end in zip(inputs, bounds[:-1], bounds[1:],
                                                                            strict=True)}
    return per_domain[domain]


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def _check_plain(module: nn.Module, model: MultiDomainNetwork, domain: str, size: tuple[int, int, int]) -> None:
    """Plain layers only, the domain's outputs, its count, and only its live input channels in the kernels."""
    assert not module.training
    for name, child in module.named_modules():
        assert isinstance(child, PLAIN), f"{name}: {type(child).__name__}"
    cost = count_cost(model, domain, size)
    assert sum(p.numel() for p in module.parameters()) == cost.params
    assert _macs(module, torch.zeros(1, *size)) == cost.macs
    # each kernel holds the domain's live input channels only; a conv missing from it costs nothing
    convs = {name: m for name, m in module.named_modules() if isinstance(m, nn.Conv2d)}
    d = model.domain_index(domain)
    layers = count_layer_costs(model, domain, size)
    for name, conv in model.switched_convs():
        if name in convs:
            assert convs[name].in_channels == int(conv.in_masks()[d].sum())
            assert convs[name].weight.abs().flatten(1).sum(1).min() > 0  # no zeroed input slice
        else:
            assert isinstance(module.get_submodule(name), ZeroConv2d) and layers[name].params == 0
    with torch.no_grad():
        x = _inputs(size)[3]
        assert (module(x) - model(x, domain)).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_module_is_the_domain_for_the_switched_and_the_pruned_model(arch):
    model, pruned = _models(arch)
    size = _size(arch)
    sizes = set()
    for domain in model.domains:
        plain = single_domain_module(model, domain)
        _check_plain(plain, model, domain, size)
        sizes.add(sum(p.numel() for p in plain.parameters()))
        from_pruned = single_domain_module(pruned, domain)
        _check_plain(from_pruned, pruned, domain, size)
        assert count_cost(pruned, domain, size) == count_cost(model, domain, size)
        # the same network whichever it was built from: same names, same tensors (channel indices included)
        state, pruned_state = plain.state_dict(), from_pruned.state_dict()
        assert list(state) == list(pruned_state)
        assert all(torch.equal(state[k], pruned_state[k]) for k in state)
    assert len(sizes) == len(model.domains)  # the domains differ: each module is one domain's, not the union


@pytest.mark.parametrize("arch", ARCHS)
def test_folding_the_norms_keeps_the_outputs_and_macs_and_trades_each_bn_for_a_bias(arch):
    """What bap.latency times: each BN that follows a conv folded into it, outputs and MACs unchanged."""
    _, pruned = _models(arch)
    size = _size(arch)
    x = _inputs(size)[3]
    for domain in pruned.domains:
        plain = single_domain_module(pruned, domain)
        folded = single_domain_module(pruned, domain, fold_norms=True)
        norms = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
        left = {name: m for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)}
        assert len(left) < len(norms)
        for name in left:  # kept: the ResNet-26's head BN (it follows a block) and BNs after a conv with no input
            parent, _, leaf = name.rpartition(".")
            conv = {"stem_bn": "stem", "1": "0"}.get(leaf, leaf.replace("bn", "conv"))
            assert name == "head_bn" or isinstance(folded.get_submodule(f"{parent}.{conv}".lstrip(".")), ZeroConv2d)
        convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(conv.bias is not None for conv in convs)
        params = sum(p.numel() for p in plain.parameters())
        removed = sum(2 * m.num_features for m in norms) - sum(2 * m.num_features for m in left.values())
        assert sum(p.numel() for p in folded.parameters()) == params - removed + sum(c.out_channels for c in convs)
        assert _macs(folded, torch.zeros(1, *size)) == count_cost(pruned, domain, size).macs
        with torch.no_grad():
            assert (folded(x) - plain(x)).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("arch", ARCHS)
def test_rounded_channel_counts_compute_the_same_with_zero_padding(arch, tmp_path):
    """channel_multiple=8 (what bap.latency times): each conv reads its live inputs in multiples of 8 where it has
    that many, the extra kernel slices zero, the domain's outputs unchanged, in torch and in the exported file."""
    model, pruned = _models(arch)
    size = _size(arch)
    x = _inputs(size)[3]
    for source in (model, pruned):
        for domain in source.domains:
            exact = single_domain_module(source, domain)
            rounded = single_domain_module(source, domain, channel_multiple=8)
            widths = {n: c.in_channels for n, c in source.switched_convs()}
            if source.pruned:
                widths = {n: len(source.pruning_maps[n]["kept_inputs"]) for n in widths}
            convs = {n: m for n, m in rounded.named_modules() if isinstance(m, nn.Conv2d)}
            for name, conv in convs.items():
                assert conv.in_channels % 8 == 0 or conv.in_channels == widths[name], name
                assert conv.in_channels >= exact.get_submodule(name).in_channels
            assert _macs(rounded, torch.zeros(1, *size)) >= count_cost(source, domain, size).macs
            with torch.no_grad():
                assert (rounded(x) - exact(x)).abs().max().item() <= TOLERANCE
    if importlib.util.find_spec("onnxruntime") is not None:
        domain = pruned.domains[0]
        path = export_domain(pruned, domain, tmp_path / "rounded.onnx", input_size=size, channel_multiple=8)
        got = _session(str(path)).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - pruned(x, domain).numpy()).max() <= TOLERANCE
    with pytest.raises(ValueError, match="channel_multiple must be a positive integer"):
        single_domain_module(model, model.domains[0], channel_multiple=0)


def test_names_read_like_the_models():
    model, _ = _models("resnet50")
    state = single_domain_module(model, "b").state_dict()
    assert {"conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.bias", "layer4.2.conv3.weight", "fc.weight", "fc.bias"} <= set(state)
    assert state["fc.weight"].shape == (3, 2048)
    tiny, _ = _models("resnet26")
    assert {"stem.weight", "stem_bn.weight", "layer3.0.conv2.weight", "head_bn.bias", "head.weight"} <= set(
        single_domain_module(tiny, "a").state_dict())


# -- exported files -------------------------------------------------------------------------------------------

class Exports:
    """Each (arch, source, domain, format) exported once per test session, into one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[tuple[str, str, str, str], Path] = {}

    def get(self, arch: str, source: str, domain: str, format: str) -> Path:
        key = (arch, source, domain, format)
        if key not in self.paths:
            model = dict(zip(("switched", "pruned"), _models(arch), strict=True))[source]
            suffix = ".onnx" if format == "onnx" else ".pt"
            path = self.root / arch / source / f"{domain}{suffix}"
            self.paths[key] = export_domain(model, domain, path, input_size=_size(arch),
                                            format=format)  # type: ignore[arg-type]
        return self.paths[key]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"))


def _onnx_counts(path: Path, size: tuple[int, int, int]) -> tuple[Cost, int, int]:
    """Parameters (conv weights and biases, BN scales and biases, Gemm weights and biases) and MACs (convs and
    Gemm; each conv's output size from onnxruntime, one image of ``size``) of an ONNX graph, its BN
    running-statistic entries and the bytes of all its initializers. Fails on an operator outside the standard
    domain, a MatMul (an uncounted linear) or a float initializer that is none of these.

    Counted per use: torch's exporter stores bit-identical tensors once (e.g. untrained BNs' ones and zeros),
    read through Identity nodes, so summing the initializers themselves would count less."""
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    alias = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}  # deduplicated tensors
    convs = [n for n in graph.node if n.op_type == "Conv"]
    for node in convs:  # expose every conv's output to read its size
        graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    session = _session(model.SerializeToString())
    values = session.run([n.output[0] for n in convs], {"input": np.zeros((1, *size), np.float32)})
    out_size = {n.output[0]: math.prod(v.shape[1:]) for n, v in zip(convs, values, strict=True)}

    def tensor(name: str) -> onnx.TensorProto:
        return initializers[alias.get(name, name)]

    used: set[str] = set()

    def numel(name: str) -> int:
        used.add(alias.get(name, name))
        return math.prod(tensor(name).dims)

    params = macs = stats = 0
    for node in graph.node:
        assert node.domain in ("", "ai.onnx"), f"custom operator {node.domain}::{node.op_type}"
        assert node.op_type != "MatMul"
        if node.op_type == "Conv":
            params += sum(numel(name) for name in node.input[1:] if name)
            macs += out_size[node.output[0]] * math.prod(tensor(node.input[1]).dims[1:])
        elif node.op_type == "BatchNormalization":
            params += numel(node.input[1]) + numel(node.input[2])
            stats += numel(node.input[3]) + numel(node.input[4])
        elif node.op_type == "Gemm":
            params += sum(numel(name) for name in node.input[1:] if name)
            macs += math.prod(tensor(node.input[1]).dims)
    floats = {name for name, i in initializers.items() if i.data_type == onnx.TensorProto.FLOAT}
    assert floats <= used, f"float initializers outside convs, BNs and the head: {sorted(floats - used)[:5]}"
    stored = sum(numpy_helper.to_array(i).nbytes for i in initializers.values())
    return Cost(params, macs), stats, stored


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is marked deprecated
        return torch.jit.load(str(path))


def _check_file_size(path: Path, payload_bytes: int, slack: int) -> None:
    """The file holds this domain's tensors and a graph, nothing more (no other domain's weights)."""
    assert payload_bytes <= path.stat().st_size <= payload_bytes + slack


def _check_onnx(path: Path, model: MultiDomainNetwork, domain: str, size: tuple[int, int, int]) -> int:
    """The graph counts as the domain and computes it for every batch size; returns its BN statistic entries."""
    counted, stats, stored = _onnx_counts(path, size)
    assert counted == count_cost(model, domain, size)
    _check_file_size(path, stored, slack=128 << 10)
    floats = sum(numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer
                 if i.data_type == onnx.TensorProto.FLOAT)
    assert floats <= 4 * (counted.params + stats)  # the domain's parameters and BN statistics, at most
    session = _session(str(path))
    assert [(i.name, i.shape[0]) for i in session.get_inputs()] == [("input", "batch")]  # a free batch size
    inputs = _inputs(size)
    for batch, expected in _expected(model, domain, size).items():
        got = session.run(None, {"input": inputs[batch].numpy()})[0]
        assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE, batch
    return stats


def _check_torchscript(path: Path, model: MultiDomainNetwork, domain: str, size: tuple[int, int, int],
                       stats: int) -> None:
    module = _load_torchscript(path)
    cost = count_cost(model, domain, size)
    assert sum(p.numel() for p in module.parameters()) == cost.params
    buffers = sum(b.numel() for b in module.buffers())
    _check_file_size(path, 4 * (cost.params + stats), slack=(512 << 10) + 8 * buffers)
    inputs = _inputs(size)
    assert _macs(module, inputs[1]) == cost.macs
    with torch.no_grad():
        for batch, expected in _expected(model, domain, size).items():
            got = module(inputs[batch]).numpy()
            assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE, batch


@requires_onnx
@pytest.mark.parametrize("arch", ARCHS)
def test_exported_files_count_and_compute_as_the_domain(arch, exports):
    model, _ = _models(arch)
    size = _size(arch)
    # the ResNet-50's pruned model gives the same single-domain modules (tested above): not exported again
    sources = ["switched"] if arch == "resnet50" else ["switched", "pruned"]
    for source in sources:
        for domain in model.domains:
            stats = _check_onnx(exports.get(arch, source, domain, "onnx"), model, domain, size)
            _check_torchscript(exports.get(arch, source, domain, "torchscript"), model, domain, size, stats)


# Runs each file on each input batch where importing bap fails: the files must stand alone.
RUNNER = """
import json, sys
sys.modules["bap"] = None
import numpy as np, onnxruntime, torch
torch.set_num_threads(1)
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = options.inter_op_num_threads = 1
jobs, out = json.loads(sys.argv[1]), {}
for key, (path, inputs) in jobs.items():
    inputs = np.load(inputs)
    if path.endswith(".onnx"):
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {"input": x})[0]
    else:
        module = torch.jit.load(path)
        run = lambda x: module(torch.from_numpy(x)).numpy()
    with torch.no_grad():
        for batch in inputs.files:
            out[key + "|" + batch] = run(inputs[batch])
np.savez(sys.argv[2], **out)
print(sorted(name for name, m in sys.modules.items() if m is not None and name.split(".")[0] == "bap"))
"""


@requires_onnx
def test_files_run_without_bap(exports, tmp_path):
    """Every format of one domain of each architecture (and a pruned one), loaded where ``import bap`` fails."""
    jobs, expected = {}, {}
    for arch in ARCHS:
        size = _size(arch)
        inputs = _inputs(size)
        np.savez(tmp_path / f"{arch}.npz", **{str(b): x.numpy() for b, x in inputs.items()})
        model, _ = _models(arch)
        for source in ("switched", "pruned") if arch == "resnet26" else ("switched",):
            for format in EXPORT_FORMATS:
                key = f"{arch}/{source}/{format}"
                jobs[key] = (str(exports.get(arch, source, "b", format)), str(tmp_path / f"{arch}.npz"))
                expected[key] = _expected(model, "b", size)
    result = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(jobs), str(tmp_path / "out.npz")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"  # nothing of bap was imported
    outputs = np.load(tmp_path / "out.npz")
    for key, batches in expected.items():
        for batch, logits in batches.items():
            got = outputs[f"{key}|{batch}"]
            assert got.shape == logits.shape and np.abs(got - logits).max() <= TOLERANCE, (key, batch)


@requires_onnx
def test_dynamo_exporter_counts_and_computes_the_same(tmp_path):
    pytest.importorskip("onnxscript")
    model, pruned = _models("resnet26")
    size = _size("resnet26")
    path = export_domain(pruned, "a", tmp_path / "a.onnx", input_size=size, onnx_exporter="dynamo")
    _check_onnx(path, model, "a", size)


@requires_onnx
def test_dead_convs_and_links_export_as_zeros(tmp_path):
    """A conv with no live input (zeros, then its BN's constants) and an inner link no consumer reads (the
    producer, its BN entries and the consumer's inputs all gone) -- for one domain only."""
    model = tiny_model(DOMAINS)
    size = _size("resnet26")
    state = model.switch_state("b")
    state["layer1.0.conv2"][:] = False  # conv1's filters: their only consumer reads none of them
    state["layer2.0.conv1"][:] = False  # reads none of the residual stream
    state["stem"][1:] = False  # one of the RGB inputs
    model.set_switch_state("b", state)
    calibrate_norms(model, size)
    plain = single_domain_module(model, "b")
    block1, block2 = plain.layer1[0], plain.layer2[0]
    assert isinstance(block1.conv1, ZeroConv2d) and block1.conv1.out_channels == 0
    assert isinstance(block1.bn1, nn.Identity) and isinstance(block1.conv2, ZeroConv2d)
    assert isinstance(block2.conv1, ZeroConv2d) and block2.bn1.num_features == block2.conv1.out_channels > 0
    assert isinstance(plain.stem, SlicedConv2d) and plain.stem.in_index.tolist() == [0]
    for domain in model.domains:
        _check_plain(single_domain_module(model, domain), model, domain, size)
    stats = _check_onnx(export_domain(model, "b", tmp_path / "b.onnx", input_size=size), model, "b", size)
    path = export_domain(model, "b", tmp_path / "b.pt", format="torchscript", input_size=size)
    _check_torchscript(path, model, "b", size, stats)


def test_a_loaded_pruned_model_exports_the_same_network(tmp_path):
    model, pruned = _models("resnet18")
    loaded = load_pruned(save_pruned(pruned, tmp_path / "pruned")).eval()
    for domain in model.domains:
        state = single_domain_module(model, domain).state_dict()
        from_loaded = single_domain_module(loaded, domain).state_dict()
        assert list(state) == list(from_loaded) and all(torch.equal(state[k], from_loaded[k]) for k in state)


@requires_onnx
def test_everything_on_exports_the_whole_width(tmp_path):
    """Every switch on: no channel is picked, and the network is the dense single-domain one. Its BNs are
    untrained (equal ones and zeros): the ONNX file stores those once, and still counts them for every BN."""
    model = tiny_model(DOMAINS).eval()
    size = _size("resnet26")
    plain = single_domain_module(model, "c")
    assert all(m.in_index is None for m in plain.modules() if isinstance(m, SlicedConv2d))
    assert sum(p.numel() for p in plain.parameters()) == count_cost(model, "c", size).params
    path = export_domain(model, "c", tmp_path / "c.onnx", input_size=size)
    graph = onnx.load(str(path)).graph
    assert any(n.op_type == "Identity" for n in graph.node)  # deduplicated
    assert sum(math.prod(i.dims) for i in graph.initializer) < count_cost(model, "c", size).params
    _check_onnx(path, model, "c", size)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_gives_a_cuda_module_and_cpu_files(tmp_path):
    model, _ = _models("resnet26")
    size = _size("resnet26")
    cuda = copy.deepcopy(model).cuda()
    plain = single_domain_module(cuda, "b")
    assert all(t.is_cuda for t in (*plain.parameters(), *plain.buffers()))
    x = _inputs(size)[3]
    with torch.no_grad():
        assert (plain(x.cuda()).cpu() - model(x, "b")).abs().max().item() <= TOLERANCE
    module = _load_torchscript(export_domain(cuda, "b", tmp_path / "b.pt", format="torchscript", input_size=size))
    with torch.no_grad():
        assert (module(x) - model(x, "b")).abs().max().item() <= TOLERANCE


def test_bad_inputs_name_the_allowed_values(tmp_path, monkeypatch):
    model = tiny_model(DOMAINS)
    with pytest.raises(KeyError, match=r"unknown domain 'z'; this model has domains \['a', 'b', 'c'\]"):
        export_domain(model, "z", tmp_path / "z.onnx")
    with pytest.raises(KeyError, match=r"domains \['a', 'b', 'c'\]"):
        single_domain_module(model, "z")
    with pytest.raises(ValueError, match=r"unknown export format 'tflite'; allowed values: \['onnx', 'torchscript'\]"):
        export_domain(model, "a", tmp_path / "a.tflite", format="tflite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"input_size must be \(channels, height, width\), got \(32, 32\)"):
        export_domain(model, "a", tmp_path / "a.onnx", input_size=(32, 32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"allowed values: \['torchscript', 'dynamo'\]"):
        export_domain(model, "a", tmp_path / "a.onnx", onnx_exporter="jit")  # type: ignore[arg-type]

    import bap.export

    real = bap.export.importlib.util.find_spec
    monkeypatch.setattr(bap.export.importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnx" else real(name, *args))
    with pytest.raises(ImportError, match=r"needs onnx, which is not installed: pip install -e \.\[export\]"):
        export_domain(model, "a", tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()
    # TorchScript needs no extra
    assert export_domain(model, "a", tmp_path / "a.pt", format="torchscript").is_file()
