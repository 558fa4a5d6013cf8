"""One domain of a multi-domain network as a plain, self-contained single-domain network: ONNX or TorchScript.

A deployed model serves one domain, so it should carry only what that domain computes: :func:`single_domain_module`
builds it from plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` / ``nn.Linear`` modules with the domain's switches folded
in, and :func:`export_domain` writes it to a file that runs without bap (onnxruntime, ``torch.jit.load``).

Folding a domain's switches (the same rules as :mod:`bap.cost` and :mod:`bap.prune`, for one domain):

- the input channels a conv does not use for this domain are removed from its kernel, not multiplied by zero; a
  conv reading the residual stream (or the image) first picks its live channels (``index_select`` with a constant
  index buffer: a gather, no parameters, no MACs);
- along an inner link (:mod:`bap.blocks`), the producer's filters that the consumer no longer reads for this domain
  are removed with their BN entries, so the consumer reads its producer's output as it is;
- residual-stream channels keep their width (only kernel slices go): the ResNet-26's zero-pad shortcut and
  torchvision's projection shortcut are reproduced exactly;
- a conv left with no live input computes zeros (:class:`ZeroConv2d`, no parameters): BN and ReLU after it still
  give their constant per-channel values, as in the switched network.

BNs stay BNs (eval mode: running statistics; not folded into the convs), so the exported graph's parameters --
conv weights, BN affine weights and biases, the head -- and its MACs (convs + the linear head) are exactly
``bap.count_cost(model, domain, input_size)``. BN running statistics and the channel indices are buffers, not
parameters, as in ``count_cost``.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from bap.blocks import BasicBlock, Bottleneck, DomainBatchNorm2d, Projection, ZeroPadShortcut
from bap.cost import DEFAULT_INPUT_SIZE
from bap.network import MultiDomainNetwork
from bap.switches import DomainConv, conv_output_size

if TYPE_CHECKING:
    import onnx

ExportFormat = Literal["onnx", "torchscript"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
OnnxExporter = Literal["torchscript", "dynamo"]
ONNX_EXPORTERS: tuple[str, ...] = get_args(OnnxExporter)
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# the optional dependencies (the ``export`` extra) of each ONNX exporter: the dynamo one builds with onnxscript
ONNX_MODULES: dict[str, tuple[str, ...]] = {"torchscript": ("onnx",), "dynamo": ("onnx", "onnxscript")}


class SlicedConv2d(nn.Conv2d):
    """A bias-free ``nn.Conv2d`` over the live input channels of a wider incoming tensor: it first picks them
    (``in_index``, a buffer of channel positions; None when it reads the incoming tensor as it is)."""

    def __init__(self, weight: torch.Tensor, in_index: torch.Tensor | None, stride: int, padding: int) -> None:
        out_channels, in_channels, kernel_size, _ = weight.shape
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False,
                         device="meta")
        self.weight = nn.Parameter(weight.detach().clone())
        self.register_buffer("in_index", None if in_index is None else in_index.long().clone().to(weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_index is not None:
            x = x.index_select(1, self.in_index)
        return super().forward(x)

    def extra_repr(self) -> str:
        picked = "" if self.in_index is None else ", picks its inputs"
        return super().extra_repr() + picked


class ZeroConv2d(nn.Module):
    """A conv none of whose input channels are live for the domain: zeros of the conv's output shape."""

    def __init__(self, out_channels: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.out_channels, self.kernel_size, self.stride, self.padding = out_channels, kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = conv_output_size(x.shape[-2], self.kernel_size, self.stride, self.padding)
        width = conv_output_size(x.shape[-1], self.kernel_size, self.stride, self.padding)
        return x.new_zeros((x.shape[0], self.out_channels, height, width))

    def extra_repr(self) -> str:
        return f"0, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride} (no live input)"


class PlainBlock(nn.Module):
    """A residual block of one domain: ``conv1 -> bn1 (-> ReLU -> conv2 -> bn2 ...)``, plus the shortcut
    (``downsample``; None = identity), then ReLU. Two stages for a BasicBlock, three for a Bottleneck."""

    def __init__(self, stages: list[tuple[nn.Module, nn.Module]], downsample: nn.Module | None) -> None:
        super().__init__()
        self.stages = len(stages)
        for i, (conv, norm) in enumerate(stages, start=1):
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", norm)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = x
        for i in range(1, self.stages + 1):
            if i > 1:
                out = torch.relu(out)
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
        return torch.relu(out + identity)


class _Folder:
    """Turns one domain's convs and BNs of a (switched or pruned) network into plain modules."""

    def __init__(self, model: MultiDomainNetwork, d: int, channel_multiple: int = 1) -> None:
        self.model = model
        self.d = d
        self.multiple = channel_multiple
        self.convs = dict(model.switched_convs())
        links = model.channel_links()
        self.consumer_of = {link.producer: link.consumer for link in links}
        self.producer_of_norm = {link.norm: link.producer for link in links}
        self.link_consumers = {link.consumer for link in links}

    def live_inputs(self, name: str) -> torch.Tensor:
        """Positions, among the conv's inputs, of the channels the domain reads -- padded up to a multiple of
        ``channel_multiple`` (as far as the conv has inputs) with channels it does not read."""
        on = self.convs[name].in_masks()[self.d]
        live = torch.nonzero(on, as_tuple=False).flatten()
        if self.multiple > 1 and live.numel():
            want = min(on.numel(), math.ceil(live.numel() / self.multiple) * self.multiple)
            padding = torch.nonzero(~on, as_tuple=False).flatten()[: want - live.numel()]
            live = torch.sort(torch.cat([live, padding])).values
        return live

    def live_outputs(self, name: str) -> torch.Tensor | None:
        """An inner link producer's filters the domain's consumer reads (None: every filter, the residual stream)."""
        consumer = self.consumer_of.get(name)
        return None if consumer is None else self.live_inputs(consumer)

    def _incoming_width(self, name: str, conv: DomainConv) -> int:
        """Channels of the tensor the conv reads: a pruned conv's kept inputs are a subset of them."""
        return int(self.model.pruning_maps[name]["in_channels"]) if self.model.pruned else conv.in_channels

    def conv(self, name: str) -> nn.Module:
        conv = self.convs[name]
        live_in = self.live_inputs(name)
        live_out = self.live_outputs(name)
        out_channels = conv.out_channels if live_out is None else int(live_out.numel())
        if live_in.numel() == 0 or out_channels == 0:
            return ZeroConv2d(out_channels, conv.kernel_size, conv.stride, conv.padding)
        weight = conv.weight.detach().index_select(1, live_in.to(conv.weight.device))
        padding = ~conv.in_masks()[self.d][live_in]  # channels read only to round the count: zero weights
        if padding.any():
            weight = weight * (~padding).to(weight).view(1, -1, 1, 1)
        if live_out is not None:
            weight = weight.index_select(0, live_out.to(weight.device))
        in_index: torch.Tensor | None = None
        if name not in self.link_consumers:  # reads the residual stream (or the image): pick the live channels
            kept = getattr(conv, "in_index", None)  # a pruned conv's kept channels of the incoming tensor
            in_index = live_in if kept is None else kept.cpu()[live_in]
            if torch.equal(in_index, torch.arange(self._incoming_width(name, conv))):
                in_index = None
        return SlicedConv2d(weight, in_index, conv.stride, conv.padding)

    def norm(self, name: str) -> nn.Module:
        norm = self.model.get_submodule(name)
        assert isinstance(norm, DomainBatchNorm2d), name
        source = norm.bns[self.d]
        producer = self.producer_of_norm.get(name)
        keep = None if producer is None else self.live_outputs(producer)
        if keep is None:
            return copy.deepcopy(source) if norm.num_features else nn.Identity()
        if keep.numel() == 0:
            return nn.Identity()
        plain = nn.BatchNorm2d(int(keep.numel()), eps=source.eps, momentum=source.momentum, affine=source.affine,
                               track_running_stats=source.track_running_stats)
        state = {k: (v[keep.to(v.device)] if v.dim() == 1 else v) for k, v in source.state_dict().items()}
        plain.load_state_dict(state)
        return plain.to(next(iter(state.values())).device)

    def block(self, name: str, block: nn.Module) -> PlainBlock:
        count = 2 if isinstance(block, BasicBlock) else 3
        stages = [(self.conv(f"{name}.conv{i}"), self.norm(f"{name}.bn{i}")) for i in range(1, count + 1)]
        downsample: nn.Module | None = None
        if isinstance(block.downsample, ZeroPadShortcut):
            downsample = copy.deepcopy(block.downsample)  # parameter-free: pool by the stride, zero-pad
        elif isinstance(block.downsample, Projection):
            downsample = nn.Sequential(self.conv(f"{name}.downsample.0"), self.norm(f"{name}.downsample.1"))
        elif block.downsample is not None:
            raise TypeError(f"unsupported shortcut {type(block.downsample).__name__} in block {name!r}")
        return PlainBlock(stages, downsample)

    def stage(self, name: str) -> nn.Sequential:
        blocks = getattr(self.model, name)
        for i, block in enumerate(blocks):
            if not isinstance(block, BasicBlock | Bottleneck):
                raise TypeError(f"unsupported block {type(block).__name__} at {name}.{i}")
        return nn.Sequential(OrderedDict((str(i), self.block(f"{name}.{i}", b)) for i, b in enumerate(blocks)))


def single_domain_module(model: MultiDomainNetwork, domain: str, *, fold_norms: bool = False,
                         channel_multiple: int | None = None) -> nn.Sequential:
    """The plain single-domain network of ``domain`` (eval mode, on the model's device): ``module(x)`` equals
    ``model(x, domain)`` of the model in eval mode, with only this domain's live channels, BNs and head.

    ``fold_norms``: fold each BN into the conv before it (:func:`fold_batch_norms`): the same outputs up to float
    rounding, with one pass less over the activations -- what onnxruntime does to an exported file when it loads
    it, and what :mod:`bap.latency` times. MACs are still ``count_cost``'s; parameters are each folded BN's two
    per channel fewer and the conv's new bias, one per channel, more.

    ``channel_multiple``: read each conv's live input channels (and keep an inner link's filters) in multiples of
    this, e.g. 8, padding with channels the domain does not use, their kernel slices zero (the same outputs; as
    far as the conv has inputs): more MACs and parameters than ``count_cost``, for CPU kernels that run round
    channel counts faster (``bench/RESULTS.md``). Default: the live channels exactly.

    Module names follow the model's (``layer1.0.conv1``, ``stem_bn``; the head is ``head`` for the ResNet-26 and
    ``fc`` for a torchvision ResNet), so a state dict reads like the model's.

    Raises:
        KeyError: ``domain`` is not one of the model's domains (naming them).
        TypeError: ``model`` is not a ResNet-26 or a torchvision ResNet of this package.
    """
    from bap.model import MultiDomainResNet26
    from bap.resnet import MultiDomainResNet

    d = model.domain_index(domain)
    if channel_multiple is not None and (not isinstance(channel_multiple, int) or channel_multiple < 1):
        raise ValueError(f"channel_multiple must be a positive integer (e.g. 8) or None, got {channel_multiple!r}")
    fold = _Folder(model, d, channel_multiple or 1)
    head = copy.deepcopy(model.heads[d])
    layers: list[tuple[str, nn.Module]]
    if isinstance(model, MultiDomainResNet26):
        layers = [("stem", fold.conv("stem")), ("stem_bn", fold.norm("stem_bn"))]
        layers += [(f"layer{s}", fold.stage(f"layer{s}")) for s in (1, 2, 3)]
        layers += [("head_bn", fold.norm("head_bn")), ("relu", nn.ReLU()), ("avgpool", nn.AdaptiveAvgPool2d(1)),
                   ("flatten", nn.Flatten(1)), ("head", head)]
    elif isinstance(model, MultiDomainResNet):
        layers = [("conv1", fold.conv("conv1")), ("bn1", fold.norm("bn1")), ("relu", nn.ReLU()),
                  ("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
        layers += [(f"layer{s}", fold.stage(f"layer{s}")) for s in (1, 2, 3, 4)]
        layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten(1)), ("fc", head)]
    else:
        raise TypeError(f"single_domain_module supports bap's MultiDomainResNet26 and MultiDomainResNet, "
                        f"got {type(model).__name__}")
    module = nn.Sequential(OrderedDict(layers)).eval()
    return fold_batch_norms(module) if fold_norms else module


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold, in place, every eval-mode BN into the conv that feeds it (``torch.nn.utils.fusion.fuse_conv_bn_eval``:
    the conv gains a bias, the BN becomes ``nn.Identity``) in a :func:`single_domain_module`: the stem, each block's
    ``conv<i>``/``bn<i>`` and each projection shortcut. A BN after a conv with no live input stays (its constant
    output is what the domain computes). Returns ``module``."""
    pairs: list[tuple[nn.Module, str, str]] = []
    for parent in module.modules():
        if isinstance(parent, PlainBlock):
            pairs += [(parent, f"conv{i}", f"bn{i}") for i in range(1, parent.stages + 1)]
        elif isinstance(parent, nn.Sequential):
            names = list(parent._modules)
            pairs += [(parent, a, b) for a, b in zip(names, names[1:], strict=False)]
    for parent, conv_name, norm_name in pairs:
        conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
        if (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training
                and norm.running_mean is not None):
            setattr(parent, conv_name, fuse_conv_bn_eval(conv, norm))
            setattr(parent, norm_name, nn.Identity())
    return module


def _require(modules: tuple[str, ...], what: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install -e .[export] (the 'export' extra: onnx, onnxruntime, onnxscript)")


def export_domain(
    model: MultiDomainNetwork,
    domain: str,
    path: str | Path,
    *,
    format: ExportFormat = "onnx",
    input_size: tuple[int, int, int] = DEFAULT_INPUT_SIZE,
    onnx_exporter: OnnxExporter = "torchscript",
    channel_multiple: int | None = None,
) -> Path:
    """Write ``domain``'s plain single-domain network (:func:`single_domain_module`) to ``path`` and return it.

    The file runs without bap: ``format="onnx"`` with onnxruntime (opset 18, input ``"input"``, output
    ``"logits"``), ``format="torchscript"`` with ``torch.jit.load``. Both are exported on the CPU in eval mode (BN
    running statistics) from an image of ``input_size`` (C, H, W), the size the graph is fixed to; the batch size is
    free. Its parameters and MACs are ``bap.count_cost(model, domain, input_size)``.

    ``onnx_exporter``: ``"torchscript"`` (default) is torch's TorchScript-based exporter (``dynamo=False``): 5-40x
    faster on the CPU than ``"dynamo"`` (``torch.export``, onnxscript) and it keeps the BNs when told to preserve
    the module's (eval) mode. Both keep every BN as a ``BatchNormalization`` node: their default optimisations would
    fold BNs into the convs (adding a bias per filter), and the graph would no longer count as ``count_cost``.
    Count an ONNX graph's parameters per use (the weight, bias, scale inputs of its Conv, BatchNormalization and
    Gemm nodes), not per stored initializer: the TorchScript-based exporter stores bit-identical tensors once
    (untrained BNs' ones and zeros, say), read through Identity nodes.

    ``channel_multiple``: as in :func:`single_domain_module` -- live channel counts padded to a multiple (zero
    kernel slices; more parameters and MACs than ``count_cost``, often faster on CPUs).

    Raises:
        KeyError: an unknown ``domain`` (naming the allowed ones).
        ValueError: an unknown ``format``, ``onnx_exporter`` or ``channel_multiple`` (naming the allowed values).
        ImportError: ONNX export without the ``export`` extra (``pip install -e .[export]``).
    """
    model.domain_index(domain)
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (channels, height, width), got {tuple(input_size)}")
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; allowed values: {list(EXPORT_FORMATS)}")
    if format == "onnx":
        if onnx_exporter not in ONNX_EXPORTERS:
            raise ValueError(f"unknown onnx_exporter {onnx_exporter!r}; allowed values: {list(ONNX_EXPORTERS)}")
        _require(ONNX_MODULES[onnx_exporter], "exporting to ONNX")
    module = single_domain_module(model, domain, channel_multiple=channel_multiple).cpu().eval()
    example = torch.randn(2, *(int(v) for v in input_size))  # batch 2: nothing gets specialised to a batch of 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks torch.jit and the TorchScript-based ONNX exporter deprecated; both are what runs here
        for category in (FutureWarning, DeprecationWarning, torch.jit.TracerWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        # said whenever the mode is PRESERVE; folding is safe here, the module being in eval mode
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        if format == "torchscript":
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
        elif onnx_exporter == "torchscript":
            _export_onnx_torchscript(module, example, path)
        else:
            _export_onnx_dynamo(module, example, path)
    if format == "onnx":
        import onnx

        onnx.checker.check_model(str(path))  # a well-formed graph of standard operators only
    return path


def _export_onnx_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    # PRESERVE: export the module in the mode it is in (eval) -- the default (EVAL) folds each BN into its conv
    torch.onnx.export(
        module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=ONNX_OPSET,
        training=torch.onnx.TrainingMode.PRESERVE,
    )


def _export_onnx_dynamo(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    import onnx
    import onnxscript.optimizer

    program = torch.onnx.export(
        module, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), opset_version=ONNX_OPSET,
        optimize=False,  # its optimiser's rewrite rules fuse BN into conv: fold the constants only
        verbose=False,
    )
    assert program is not None
    onnxscript.optimizer.fold_constants_ir(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    proto = program.model_proto
    _drop_zero_conv_biases(proto)
    onnx.save(proto, str(path))


def _drop_zero_conv_biases(proto: onnx.ModelProto) -> None:
    """The dynamo exporter gives each bias-free conv an explicit all-zero bias: drop it (a parameter per filter
    that ``count_cost`` does not count, and that no conv here has)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in proto.graph.initializer}
    dropped = set()
    for node in proto.graph.node:
        if node.op_type == "Conv" and len(node.input) == 3 and node.input[2] in initializers:
            if not numpy_helper.to_array(initializers[node.input[2]]).any():
                dropped.add(node.input[2])
                del node.input[2]
    still_used = {name for node in proto.graph.node for name in node.input}
    keep = [i for i in proto.graph.initializer if i.name not in dropped or i.name in still_used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
