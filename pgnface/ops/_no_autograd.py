"""Calling an op's kernel without its Python autograd layer when no gradient can flow.

The ops' autograd formulas are registered from Python (``torch.library.register_autograd``), so
every call passes through a Python autograd kernel, even under ``torch.no_grad()``; for small
batches (a single 3x3 SVD) that layer costs more than the kernel. When no input requires a
gradient, that kernel only steps below autograd and calls the device kernel; :func:`call` does
the same step directly. It keeps the full dispatch where anything else may be going on: under
``torch.compile`` tracing, and for tensors other than plain ``torch.Tensor`` (subclasses, fake
tensors, functorch's wrapped tensors).
"""

import torch

_below_autograd = torch._C._AutoDispatchBelowAutograd
_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def call(op, tensors, *args):
    """``op(*args)``, skipping the autograd dispatch when none of `tensors` can carry a gradient.

    Args:
        op: a ``torch.ops.pgnface`` overload.
        tensors: the tensor arguments among args (None allowed), tested for requires_grad.
        args: op's arguments.

    Returns:
        op's result.
    """
    if torch.compiler.is_compiling():
        return op(*args)
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) is not torch.Tensor or _is_functorch_wrapped(t) or (grad and t.requires_grad):
            return op(*args)
    with _below_autograd():
        return op(*args)
