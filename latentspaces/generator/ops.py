"""Functional building blocks of the StyleGAN2 generator, in plain PyTorch.

Every fast path here has a straightforward reference implementation beside it
(`*_reference`), used by the tests to check the fast path to float32 rounding.
Nothing is compiled: these run unchanged on CPU and CUDA.

Conventions (shared by the NVlabs and rosinality implementations):
- Resampling filters are 2-D FIR kernels normalised to sum 1, built from 1-D taps
  (default [1, 3, 3, 1]); upsampling by 2 multiplies them by a gain of 4.
- "Filtering" means convolution in the signal-processing sense (the kernel is flipped),
  which is what upfirdn2d does. All filters used by StyleGAN2 are symmetric, so the flip
  only matters for asymmetric user filters, and we keep it to be exact.

Two speed-ups of the layers, each equal to the plain arrangement to float32 rounding and chosen by
measurement (BENCHMARKS.md "Faster inversion"; `layer_options` switches them, for side-by-side runs):
- Channels-last convolutions: on CPU the convolutions run on channels-last tensors ([N, C, H, W]
  shape, C-fastest strides), where oneDNN needs no reorder and has faster kernels. Shapes and values
  do not change, only strides; modules return contiguous NCHW at their public boundaries. CUDA keeps
  NCHW (not measured there).
- Folded epilogues: a layer's bias, leaky ReLU and gain run as one pass after the convolution, the
  gain folded into what comes before (lrelu(a) * g == lrelu(a * g) for g > 0) instead of `bias_act`'s
  three passes.
"""

from __future__ import annotations

import contextlib
import math
from typing import Dict, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)

# Device type -> run convolutions channels-last (CUDA fp32: not measured, so off).
_CHANNELS_LAST: Dict[str, bool] = {"cpu": True}
_FOLDED_EPILOGUES = {"on": True}


@contextlib.contextmanager
def layer_options(*, channels_last: Optional[bool] = None, folded_epilogues: Optional[bool] = None,
                  device_type: str = "cpu") -> Iterator[None]:
    """Within the block, switch the layers' speed-ups (None keeps the current setting).

    channels_last: convolutions on `device_type` ('cpu', 'cuda') run channels-last.
    folded_epilogues: bias, activation and gain in one pass after each conv, or as `bias_act` does them.
    Results are equal to float32 rounding either way; this exists for side-by-side measurement and tests.
    """
    before = (_CHANNELS_LAST.get(device_type, False), _FOLDED_EPILOGUES["on"])
    if channels_last is not None:
        _CHANNELS_LAST[device_type] = bool(channels_last)
    if folded_epilogues is not None:
        _FOLDED_EPILOGUES["on"] = bool(folded_epilogues)
    try:
        yield
    finally:
        _CHANNELS_LAST[device_type], _FOLDED_EPILOGUES["on"] = before


def folded_epilogues() -> bool:
    """Whether layers fold bias, activation and gain into one pass (see `layer_options`)."""
    return _FOLDED_EPILOGUES["on"]


def to_conv_layout(t: torch.Tensor) -> torch.Tensor:
    """t [N, C, H, W] in the layout convolutions on its device run in (no copy if it already is)."""
    if t.ndim == 4 and _CHANNELS_LAST.get(t.device.type, False):
        return t.contiguous(memory_format=torch.channels_last)
    return t


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride: int = 1,
           padding=0, groups: int = 1) -> torch.Tensor:
    """F.conv2d (cross-correlation) with input and weight in the device's conv layout."""
    return F.conv2d(to_conv_layout(x), to_conv_layout(weight), bias, stride=stride, padding=padding, groups=groups)


def conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                     groups: int = 1) -> torch.Tensor:
    """F.conv_transpose2d (no bias) with input and weight in the device's conv layout."""
    return F.conv_transpose2d(to_conv_layout(x), to_conv_layout(weight), stride=stride, padding=padding,
                              groups=groups)


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """1-D taps -> separable 2-D FIR kernel [k, k], normalised to sum 1 (float32)."""
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"resample filter taps must be a non-empty 1-D sequence, got {taps!r}")
    f = torch.outer(t, t)
    return f / f.sum()


def bias_act(
    x: torch.Tensor,
    bias: Optional[torch.Tensor],
    activation: str = "linear",
    gain: float = 1.0,
    clamp: Optional[float] = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by `gain`, clamp to +-clamp.

    activation: 'linear' or 'lrelu' (leaky ReLU, slope 0.2). The caller passes the full gain
    (sqrt(2) for lrelu layers) so that conv_clamp can be scaled the same way NVlabs does.
    """
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.reshape(shape)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def lrelu_(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) in place, for a fresh tensor no autograd node has saved.

    Callers fold the layer's gain g into what comes before, as lrelu(a) * g == lrelu(a * g) for g > 0:
    one pass over the activations instead of three (bias, activation, gain), the same values to rounding.
    """
    return F.leaky_relu_(x, LRELU_SLOPE)


def _depthwise_filter(x: torch.Tensor, f: torch.Tensor, gain: float, padding=0) -> torch.Tensor:
    """Convolve every channel of x [N, C, H, W] with the 2-D kernel f; `padding` zeros per side (int or (h, w))."""
    c = x.shape[1]
    k = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return conv2d(x, k, padding=padding, groups=c)


def filter2d(x: torch.Tensor, f: torch.Tensor, padding: Sequence[int], gain: float = 1.0) -> torch.Tensor:
    """Pad x [N, C, H, W] by (left, right, top, bottom) zeros, then filter with f."""
    pl, pr, pt, pb = padding
    if pl == pr >= 0 and pt == pb >= 0:   # symmetric: the conv pads itself, one pass over x fewer
        return _depthwise_filter(x, f, gain, padding=(pt, pl))
    x = F.pad(x, list(padding))
    return _depthwise_filter(x, f, gain)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Upsample by 2 with the FIR filter f (gain 4): [N, C, H, W] -> [N, C, 2H, 2W].

    Equal to upfirdn2d(x, f, up=2, padding=(2, 1, 2, 1), gain=4), done as one depthwise
    transposed convolution: a stride-2 transposed conv with padding p = k/2 - 1 inserts the
    same zeros and the same (k - 1 - p, k - 1 - p) = (2, 1)+1 border as the reference.
    """
    k = f.shape[0]
    if k % 2 != 0:
        return upfirdn2d_reference(x, f, up=2, padding=((k + 1) // 2, (k - 2) // 2) * 2, gain=4.0)
    c = x.shape[1]
    w = (f * 4.0).to(x.dtype)[None, None].expand(c, 1, k, k)
    # conv_transpose2d correlates with the kernel flipped, i.e. convolves with f: as upfirdn2d.
    return conv_transpose2d(x, w, stride=2, padding=k // 2 - 1, groups=c)


def upfirdn2d_reference(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Reference upfirdn2d: zero-insertion upsampling, zero padding (l, r, t, b), FIR filter.

    `gain` multiplies the filter; pass up**2 to keep the signal level when upsampling.

    Slow and obvious; the fast paths above are tested against it.
    """
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    pl, pr, pt, pb = padding
    x = F.pad(x, [pl, pr, pt, pb])
    k = (f.flip([0, 1]) * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(x, k, groups=c)


def _conv_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int) -> torch.Tensor:
    """Stride-2 transposed conv with the (not flipped) weight [O, I/groups, k, k], then blur.

    Output [N, O, 2H, 2W] for k = 3. This is StyleGAN2's upsampling convolution: the weight
    is transposed per group (in <-> out), never flipped, and the result is filtered with f
    times 4, padding (1, 1) on each side.
    """
    o, i_per_group, kh, kw = weight.shape
    w = weight.reshape(groups, o // groups, i_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * i_per_group, o // groups, kh, kw)
    x = conv_transpose2d(x, w, stride=2, groups=groups)
    fk = f.shape[0]
    p0 = (fk + 2 - 1) // 2 + kw // 2 - (kw - 1)  # = 1 for k=3 and a 4-tap filter
    p1 = (fk - 2) // 2 + kw // 2 - (kw - 2)
    return filter2d(x, f, (p0, p1, p0, p1), gain=4.0)


def conv2d_resample(
    x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, up: int, padding: int, groups: int = 1
) -> torch.Tensor:
    """conv2d (cross-correlation, as in both reference codebases) with optional 2x upsampling."""
    if up == 1:
        return conv2d(x, weight, padding=padding, groups=groups)
    if up == 2:
        if padding != weight.shape[-1] // 2:
            raise ValueError("upsampling convolution expects 'same' padding (kernel_size // 2)")
        return _conv_up2(x, weight, f, groups)
    raise ValueError(f"up must be 1 or 2, got {up}")


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    gain: float = 1.0,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution, then (+ noise + bias) * gain.

    Args:
        x:       input features [N, I, H, W].
        weight:  shared weight [O, I, k, k] (the 1/sqrt(fan_in) gain cancels under
                 demodulation; callers fold it into `styles` when demodulate is False).
        styles:  per-sample input-channel scales [N, I].
        demodulate: normalise every output filter to unit L2 norm (eps 1e-8).
        up:      1, or 2 for the upsampling convolution (then padding must be k // 2).
        noise:   tensor broadcastable to the output [N, O, H', W'], or None (added after demodulation).
        bias:    per-output-channel bias [O], or None (added after the noise).
        gain:    multiplies the result (> 0 lets a leaky ReLU's gain be folded in here, see `lrelu_`).
        fused:   True: one grouped conv with per-sample weights; False: scale the
                 activations instead (x * s, shared conv, * dcoefs). Equal to ~1e-6.
    Returns: [N, O, H * up, W * up] (for 'same' padding).
    """
    n, i = styles.shape
    o, wi, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[0] != n or x.shape[1] != i or wi != i:
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)}, styles "
            f"{tuple(styles.shape)} do not agree (expected x [N, I, H, W], weight [O, I, k, k], styles [N, I])"
        )
    if up > 1 and resample_filter is None:
        raise ValueError("upsampling needs a resample_filter")
    # Demodulation coefficients sum_{i,k} (W_oik s_i)^2 = (s^2) @ (sum_k W_oik^2)^T: a small matmul
    # instead of materialising the per-sample weights [N, O, I, k, k] (which dominates CPU time).
    dcoefs = None
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    # The terms added after the convolution, scaled by the gain: [1 or N, O, H', W'] (noise and bias
    # broadcast, at most the output's size), or None.
    offset = None
    if noise is not None:
        offset = noise
    if bias is not None:
        b = bias.to(x.dtype).reshape(1, o, 1, 1)
        offset = b if offset is None else offset + b
    if offset is not None and gain != 1:
        offset = offset * gain

    if not fused:
        x = x * styles.reshape(n, i, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up, padding)
        if dcoefs is None:   # toRGB: no per-channel scale to fold the offset into
            x = x if gain == 1 else x * gain
            return x if offset is None else x + offset
        scale = (dcoefs * gain).reshape(n, o, 1, 1)
        if offset is None or not folded_epilogues():
            x = x * scale
            return x if offset is None else x + offset
        # One pass: x * scale + offset. addcmul's result takes its first argument's layout: give it x's.
        offset = offset.reshape((1,) * (4 - offset.ndim) + tuple(offset.shape)).expand(-1, o, -1, -1)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            offset = offset.contiguous(memory_format=torch.channels_last)
        return torch.addcmul(offset, x, scale)

    scale = styles.reshape(n, 1, i) if dcoefs is None else styles.reshape(n, 1, i) * dcoefs.reshape(n, o, 1)
    if gain != 1:
        scale = scale * gain
    w = weight.unsqueeze(0) * scale.unsqueeze(-1).unsqueeze(-1)  # per-sample weights [N, O, I, k, k]
    h, wd = x.shape[2], x.shape[3]
    x = x.reshape(1, n * i, h, wd)
    x = conv2d_resample(x, w.reshape(n * o, i, kh, kw), resample_filter, up, padding, groups=n)
    x = x.reshape(n, o, x.shape[2], x.shape[3])
    return x if offset is None else x + offset


def modulated_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    gain: float = 1.0,
) -> torch.Tensor:
    """Per-sample loop, explicit weights, upsampling as zero insertion + flipped-kernel conv.

    The upsampling conv equals: zero-insert x to 2H-1, pad k-1, correlate with the
    spatially flipped weight (that is what a transposed conv does), then blur (pad 1, gain 4).
    """
    outs = []
    for b in range(x.shape[0]):
        w = weight * styles[b].reshape(1, -1, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
        xb = x[b : b + 1]
        if up == 1:
            y = F.conv2d(xb, w, padding=padding)
        else:
            k = w.shape[-1]
            hh, ww = xb.shape[2], xb.shape[3]
            z = xb.new_zeros(1, xb.shape[1], 2 * hh - 1, 2 * ww - 1)
            z[:, :, ::2, ::2] = xb
            z = F.pad(z, [k - 1] * 4)
            y = F.conv2d(z, w.flip([2, 3]))
            y = upfirdn2d_reference(y, resample_filter, up=1, padding=(1, 1, 1, 1), gain=4.0)
        outs.append(y)
    out = torch.cat(outs)
    if noise is not None:
        out = out + noise
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out * gain
