"""Backend choice for the public kernel ops: ``"auto" | "triton" | "torch"``.

Rules (the team's kernel contract):

* ``backend="torch"`` always runs :mod:`ssmsignal.kernels.reference`.
* ``backend="auto"`` is first replaced by the environment variable ``SSMSIGNAL_BACKEND`` when it
  is set (read at every call). Auto then picks Triton iff every tensor argument is on CUDA,
  none is double precision (float64/complex128: the Triton kernels compute in float32, so
  double-precision work stays on the exact reference), ``import triton`` works and
  ``ssmsignal.kernels.triton.<module>`` provides the op.
* ``backend="triton"`` (or ``SSMSIGNAL_BACKEND=triton``) where Triton cannot run raises a
  ``RuntimeError`` that names the reason. With ``TRITON_INTERPRET=1`` CPU tensors are accepted.
  Ops without any Triton kernel (``fft_conv``, which uses cuFFT through ``torch.fft``) run in
  PyTorch under ``SSMSIGNAL_BACKEND=triton``; an explicit ``backend="triton"`` for them raises.
"""

from __future__ import annotations

import importlib
import os

import torch

from . import reference

BACKENDS = ("auto", "torch", "triton")
_DOUBLE = (torch.float64, torch.complex128)

#: op name -> module under ``ssmsignal.kernels.triton`` holding a function of the same name.
#: ``fft_conv`` is absent on purpose: it stays on ``torch.fft`` (cuFFT on the GPU).
TRITON_MODULES = {
    "cauchy": "cauchy",
    "s4d_conv": "s4d_conv",
    "selective_scan": "selective_scan",
    "selective_state_update": "selective_state_update",
    "vandermonde": "vandermonde",
}


def _requested_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    env = os.environ.get("SSMSIGNAL_BACKEND", "").strip().lower()
    if env == "":
        return "auto"
    if env not in BACKENDS:
        raise ValueError(f"environment variable SSMSIGNAL_BACKEND must be one of {BACKENDS}, "
                         f"got {env!r}")
    return env


def _load_triton_op(op):
    """Return ``(function, None)`` or ``(None, reason it is unavailable)``."""
    if op not in TRITON_MODULES:
        return None, f"there is no Triton kernel for {op}"
    try:
        importlib.import_module("triton")
    except ImportError as exc:
        return None, f"the triton package cannot be imported ({exc})"
    name = f"ssmsignal.kernels.triton.{TRITON_MODULES[op]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None, f"the Triton module {name} does not exist yet"
    fn = getattr(module, op, None)
    if fn is None:
        return None, f"{name} has no function {op}"
    return fn, None


def _device_problem(tensors, interpret_ok):
    """Why these tensors cannot go to Triton (None when they all can)."""
    devices = sorted({t.device.type for t in tensors})
    if all(d == "cuda" for d in devices):
        return None
    if interpret_ok and os.environ.get("TRITON_INTERPRET", "") == "1":
        return None
    return (f"the tensor arguments are on {devices}, not all on CUDA "
            "(set TRITON_INTERPRET=1 to run Triton kernels on CPU tensors)")


def resolve(op, backend, *args):
    """Pick the implementation of ``op`` for these arguments.

    Parameters
    ----------
    op : str
        Public op name (a function of :mod:`ssmsignal.kernels.reference`).
    backend : {"auto", "torch", "triton"}
    *args
        The op's arguments; the tensors among them decide the device rule.

    Returns
    -------
    callable
        ``reference.<op>`` or ``ssmsignal.kernels.triton.<module>.<op>``.
    """
    choice = _requested_backend(backend)
    if choice == "torch" or (choice != backend and op not in TRITON_MODULES):
        # SSMSIGNAL_BACKEND=triton leaves ops without a Triton kernel (fft_conv) on PyTorch;
        # only an explicit backend="triton" for them raises.
        return getattr(reference, op)
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    problem = None if op in TRITON_MODULES else f"there is no Triton kernel for {op}"
    if problem is None:
        problem = _device_problem(tensors, interpret_ok=(choice == "triton"))
    if problem is None and choice == "auto" and any(t.dtype in _DOUBLE for t in tensors):
        problem = "double-precision inputs stay on the float64 reference"
    fn = None
    if problem is None:
        fn, problem = _load_triton_op(op)
    if problem is None:
        return fn
    if choice == "triton":
        raise RuntimeError(f"{op}: backend 'triton' was requested but {problem}")
    return getattr(reference, op)


#: the public ops; ``s4d_kernel``'s fast part is the ``vandermonde`` Triton kernel
OPS = ("cauchy", "fft_conv", "s4d_conv", "s4d_kernel", "selective_scan",
       "selective_state_update", "vandermonde")
_TRITON_VIA = {"s4d_kernel": "vandermonde"}


def uses_triton(op, *tensors):
    """Whether ``backend="auto"`` (after ``SSMSIGNAL_BACKEND``) runs ``op``'s Triton kernel here.

    For callers that pick between two formulations of the same computation (the S4D layer:
    the fused ``s4d_conv`` on the Triton path, the FFT convolution otherwise).
    """
    return resolve(op, "auto", *tensors) is not getattr(reference, op)


def available_backends(op):
    """Backends that can run ``op`` on CUDA tensors in this environment, e.g. ``["torch"]``.

    ``s4d_kernel`` counts as Triton-capable when its Vandermonde product is. An unknown op name
    raises ``ValueError``.
    """
    if op not in OPS:
        raise ValueError(f"unknown kernel op {op!r}; the ops are {OPS}")
    fn, _ = _load_triton_op(_TRITON_VIA.get(op, op))
    return ["torch", "triton"] if fn is not None else ["torch"]
