"""A faster copy of a network for inference: batch norm folded into the convolutions, channels-last.

Feature extraction is what adding a class, fitting a detector and serving spend their time on. Two
changes make the same network about twice as fast on a CPU without changing what it computes (up to
float rounding):

* every ``Conv2d`` followed by a ``BatchNorm2d`` becomes one convolution with the normalisation folded
  into its weights and bias (eval-mode batch norm is an affine map per channel), so each block reads
  and writes its feature map once instead of twice;
* weights and inputs in channels-last layout, which oneDNN's CPU convolutions run fastest (a model
  loaded from a file is in the default layout; measured on ConvNet: 3.7 s → 2.0 s for 6,000 images).

:func:`for_inference` keeps one copy per network and makes a new one only when a parameter or buffer
has changed since (training steps, ``load_state_dict``): tensors count their in-place updates.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batch_norm", "for_inference"]

_cache: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def fold_batch_norm(module: nn.Module) -> int:
    """Fold batch norm into the preceding convolution, in place; returns how many pairs were folded.

    A pair is a ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential``, or a pair
    of attributes a module names in its ``fusable_pairs`` (for blocks whose ``forward`` applies them in
    a row). The batch norm becomes ``nn.Identity``. Only valid in eval mode.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    >>> x = torch.randn(2, 1, 8, 8)
    >>> before = net(x)
    >>> fold_batch_norm(net), torch.allclose(net(x), before, atol=1e-6), type(net[1]).__name__
    (1, True, 'Identity')
    """
    folded = 0
    for child in module.children():
        folded += fold_batch_norm(child)
    pairs: list[tuple[str, str]] = list(getattr(module, "fusable_pairs", ()))
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        pairs += [(a, b) for a, b in zip(names, names[1:], strict=False)
                  if isinstance(module._modules[a], nn.Conv2d) and isinstance(module._modules[b], nn.BatchNorm2d)]
    for conv_name, bn_name in pairs:
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
            folded += 1
    return folded


def _state_version(module: nn.Module) -> tuple:
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), t._version, t.device) for t in tensors)


def for_inference(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` with batch norm folded and channels-last weights, cached.

    Use it for forward passes under ``torch.inference_mode()``; never train it. The copy is rebuilt
    when any parameter or buffer of ``network`` has changed since it was made.
    """
    version = _state_version(network)
    cached = _cache.get(network)
    if cached is not None and cached[0] == version:
        return cached[1]
    fast = copy.deepcopy(network).eval()
    for p in fast.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        fold_batch_norm(fast)
        if any(p.dim() == 4 for p in fast.parameters()):
            fast = fast.to(memory_format=torch.channels_last)
    _cache[network] = (version, fast)
    return fast
