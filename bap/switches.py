"""Per-domain input-channel switches on a shared convolution (BA², paper.md §2.2).

Each (domain, input channel) pair has one real-valued switch ``ŝ``. The forward pass binarises it,
``s = 1[ŝ > threshold]``, and the backward pass is the identity straight-through estimator (as in Piggyback):
``∂L/∂ŝ := ∂L/∂s``. Switching channel ``c`` off is the same function as zeroing the kernel's input slice ``c``; both
forms are implemented because which one is faster depends on the device (paper.md §9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bap.choices import SWITCH_FORMS, SwitchForm


def binarize(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Exactly 0/1 in the forward pass; identity gradient to ``scores`` in the backward pass."""
    hard = (scores > threshold).to(scores.dtype)
    # ``scores - scores.detach()`` is exactly 0.0, so the forward value stays exactly 0/1.
    return hard + (scores - scores.detach())


def pick(stacked: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
    """Row ``domain`` of a per-domain stack. A tensor index is gathered (``index_select``), not read as a Python
    number, so a compiled graph takes the domain as data (plain indexing by a 0-dim tensor syncs to the host)."""
    if isinstance(domain, torch.Tensor):
        return stacked.index_select(0, domain.reshape(1)).squeeze(0)
    return stacked[domain]


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


class DomainConv(nn.Module):
    """A bias-free convolution with one input-channel switch vector per domain: switched (trainable) or pruned
    (fixed). Everything that walks a network's switches -- switch states, costs, pruning -- finds its convs by this
    type, whatever the architecture.

    Subclasses set ``in_channels``, ``out_channels``, ``kernel_size``, ``stride``, ``padding`` and ``weight`` and
    implement ``in_masks()``: a boolean ``(domains, in_channels)`` tensor.
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int

    def in_masks(self) -> torch.Tensor:
        raise NotImplementedError


class SwitchedConv2d(DomainConv):
    """A bias-free convolution shared by all domains, with one switch per (domain, input channel).

    Args:
        in_channels: input channels of the kernel.
        out_channels: output channels (filters).
        num_domains: number of domains, each with its own switch vector.
        stride: convolution stride.
        kernel_size: square kernel size (padding keeps "same" size at stride 1).
        switch_init: initial real value of every switch (all ON when above ``threshold``).
        threshold: binarisation threshold ``τ``.
        form: where the switch is applied during training: ``"activation"`` masks the input, ``"kernel"`` masks
            the kernel's input slices, ``"auto"`` picks the kernel form on CUDA and the activation form on CPU
            (measured faster on each, paper.md §9). Evaluation without gradients always masks the kernel.
        train_weight: fine-tune the shared kernel (frozen by default).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_domains: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        switch_init: float = 1e-2,
        threshold: float = 5e-3,
        form: SwitchForm = "auto",
        train_weight: bool = False,
    ) -> None:
        super().__init__()
        if form not in SWITCH_FORMS:
            raise ValueError(f"switch form must be one of {SWITCH_FORMS}, got {form!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2
        self.threshold = threshold
        self.form: SwitchForm = form
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.weight.requires_grad_(train_weight)
        self.scores = nn.Parameter(torch.full((num_domains, in_channels), float(switch_init)))

    def switches(self, domain: int | torch.Tensor) -> torch.Tensor:
        """Binary switches of one domain, shape ``(in_channels,)``, with a straight-through gradient."""
        return binarize(pick(self.scores, domain), self.threshold)

    def in_masks(self) -> torch.Tensor:
        """Boolean ``(num_domains, in_channels)``: which input channels each domain uses."""
        return (self.scores.detach() > self.threshold).cpu()

    def _use_kernel_form(self, x: torch.Tensor) -> bool:
        if not torch.is_grad_enabled():
            return True
        if self.form == "auto":
            return x.is_cuda
        return self.form == "kernel"

    def forward(self, x: torch.Tensor, domain: int | torch.Tensor) -> torch.Tensor:
        s = self.switches(domain)
        if self._use_kernel_form(x):
            weight = self.weight * s.to(self.weight.dtype).view(1, -1, 1, 1)
            return F.conv2d(x, weight, stride=self.stride, padding=self.padding)
        x = x * s.to(x.dtype).view(1, -1, 1, 1)
        return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"domains={self.scores.shape[0]}, threshold={self.threshold}, form={self.form}"
        )
