"""Backend selection (``backend=``, ``SSMSIGNAL_BACKEND``, ``TRITON_INTERPRET``) and argument checks.

The Triton side is replaced by a fake module where a test needs one, so these tests do not depend
on the Triton kernels being present or correct (their own tests compare them to the reference).
"""

import sys
import types

import pytest
import torch

import ssmsignal.kernels as K
from ssmsignal.kernels import _dispatch, reference

OPS = {
    "selective_scan": lambda: (torch.randn(1, 2, 5), torch.rand(1, 2, 5), -torch.rand(2, 3),
                               torch.randn(1, 3, 5), torch.randn(1, 3, 5)),
    "selective_state_update": lambda: (torch.zeros(1, 2, 3), torch.randn(1, 2), torch.rand(1, 2),
                                       -torch.rand(2, 3), torch.randn(1, 3), torch.randn(1, 3)),
    "vandermonde": lambda: (torch.randn(2, 3, dtype=torch.complex64),
                            -torch.rand(2, 3, dtype=torch.complex64), 8),
    "cauchy": lambda: (torch.randn(2, 3, dtype=torch.complex64), torch.randn(8, dtype=torch.complex64),
                       torch.randn(2, 3, dtype=torch.complex64)),
    "s4d_conv": lambda: (torch.randn(2, 5, 3), -torch.rand(3, 4, dtype=torch.complex64),
                         torch.randn(3, 4, dtype=torch.complex64), torch.randn(3)),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("SSMSIGNAL_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def fake_triton(monkeypatch):
    """Point every op at a fake Triton module whose functions return the string 'fake'."""
    module = types.ModuleType("ssmsignal.kernels.triton._fake_for_tests")
    for op in _dispatch.TRITON_MODULES:
        setattr(module, op, lambda *args, **kwargs: "fake")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for op in list(_dispatch.TRITON_MODULES):
        monkeypatch.setitem(_dispatch.TRITON_MODULES, op, "_fake_for_tests")
    return module


def test_all_is_sorted_and_complete():
    assert K.__all__ == sorted(K.__all__)
    for name in ("selective_scan", "selective_state_update", "vandermonde", "s4d_kernel",
                 "cauchy", "fft_conv", "s4d_conv"):
        assert name in K.__all__ and callable(getattr(K, name))
    helpers = ("BACKENDS", "available_backends", "uses_triton")
    assert set(_dispatch.OPS) == {n for n in K.__all__ if n not in helpers}


@pytest.mark.parametrize("op", sorted(OPS))
def test_triton_on_cpu_without_interpreter_raises(op):
    with pytest.raises(RuntimeError, match="not all on CUDA.*TRITON_INTERPRET=1"):
        getattr(K, op)(*OPS[op](), backend="triton")


@pytest.mark.parametrize("op", sorted(OPS))
def test_auto_on_cpu_runs_reference(op, fake_triton, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # auto still needs CUDA tensors
    assert _dispatch.resolve(op, "auto", *OPS[op]()) is getattr(reference, op)
    assert getattr(K, op)(*OPS[op]()) != "fake"


@pytest.mark.parametrize("op", sorted(OPS))
def test_interpreter_lets_triton_take_cpu_tensors(op, fake_triton, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert getattr(K, op)(*OPS[op](), backend="triton") == "fake"


def test_s4d_kernel_dispatches_its_vandermonde(fake_triton, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    A = torch.complex(-torch.rand(2, 3), torch.randn(2, 3))
    args = (A, torch.ones(2, 3, dtype=torch.complex64), torch.ones(2, 3, dtype=torch.complex64),
            torch.rand(2) + 0.1, 8)
    assert K.s4d_kernel(*args, backend="triton") == "fake"
    assert K.s4d_kernel(*args).shape == (2, 8)


def test_missing_triton_module_is_named(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(_dispatch.TRITON_MODULES, "cauchy", "_no_such_module")
    with pytest.raises(RuntimeError, match=r"ssmsignal\.kernels\.triton\._no_such_module does not exist"):
        K.cauchy(*OPS["cauchy"](), backend="triton")


def test_unimportable_triton_is_reported(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    with pytest.raises(RuntimeError, match="triton package cannot be imported"):
        K.vandermonde(*OPS["vandermonde"](), backend="triton")
    assert _dispatch.available_backends("vandermonde") == ["torch"]


def test_environment_variable_replaces_auto(fake_triton, monkeypatch):
    args = OPS["selective_scan"]()
    monkeypatch.setenv("SSMSIGNAL_BACKEND", "triton")  # read at call time
    with pytest.raises(RuntimeError, match="backend 'triton' was requested"):
        K.selective_scan(*args)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert K.selective_scan(*args) == "fake"
    monkeypatch.setenv("SSMSIGNAL_BACKEND", "torch")
    assert K.selective_scan(*args).shape == (1, 2, 5)
    assert K.selective_scan(*args, backend="triton") == "fake"  # explicit beats the variable
    monkeypatch.setenv("SSMSIGNAL_BACKEND", "cuda")
    with pytest.raises(ValueError, match="SSMSIGNAL_BACKEND"):
        K.selective_scan(*args)


def test_bad_backend_string_raises():
    with pytest.raises(ValueError, match="backend must be one of"):
        K.fft_conv(torch.randn(1, 2, 4), torch.randn(2, 4), backend="cuda")


def test_fft_conv_has_no_triton_kernel(monkeypatch):
    u, k = torch.randn(1, 2, 4), torch.randn(2, 3)
    with pytest.raises(RuntimeError, match="no Triton kernel for fft_conv"):
        K.fft_conv(u, k, backend="triton")
    monkeypatch.setenv("SSMSIGNAL_BACKEND", "triton")
    torch.testing.assert_close(K.fft_conv(u, k), reference.fft_conv(u, k))


def _scan_args(**change):
    args = dict(u=torch.randn(2, 6, 5), delta=torch.rand(2, 6, 5), A=-torch.rand(6, 3),
                B=torch.randn(2, 3, 3, 5), C=torch.randn(2, 3, 3, 5))
    args.update(change)
    return args


@pytest.mark.parametrize("change,error,match", [
    (dict(u=torch.randn(2, 6)), ValueError, "u must have 3 dimensions"),
    (dict(delta=torch.rand(2, 6, 4)), ValueError, r"delta must have shape \(2, 6, 5\)"),
    (dict(A=-torch.rand(5, 3)), ValueError, r"A must have shape \(d=6, N\)"),
    (dict(B=torch.randn(2, 4, 3, 5)), ValueError, r"groups of B \(4\) must divide d \(6\)"),
    (dict(C=torch.randn(2, 4, 5)), ValueError, r"C must have shape \(2, 3, 5\)"),
    (dict(B=torch.randn(2, 3)), ValueError, r"B must have 3 or 4 dimensions, got shape \(2, 3\)"),
    (dict(B=torch.randn(2, 2, 3, 5)), ValueError, "B and C have 2 and 3 groups"),
    (dict(D=torch.randn(5)), ValueError, r"D must have shape \(6,\)"),
    (dict(z=torch.randn(2, 6, 6)), ValueError, "z must have shape"),
    (dict(seq_lengths=torch.tensor([5, 6])), ValueError, r"seq_lengths must lie in \[0, L=5\]"),
    (dict(seq_lengths=torch.tensor([5.0, 1.0])), TypeError, "seq_lengths must be an integer"),
    (dict(u=torch.randint(0, 3, (2, 6, 5))), TypeError, "u must be a real floating tensor"),
])
def test_selective_scan_rejects_bad_arguments(change, error, match):
    with pytest.raises(error, match=match):
        K.selective_scan(**_scan_args(**change))


@pytest.mark.parametrize("call,error,match", [
    (lambda: K.selective_state_update(torch.zeros(1, 2, 3, dtype=torch.float16), torch.randn(1, 2),
                                      torch.rand(1, 2), -torch.rand(2, 3), torch.randn(1, 3),
                                      torch.randn(1, 3)), TypeError, "state must be float32"),
    (lambda: K.selective_state_update(torch.zeros(1, 2, 3), torch.randn(1, 2), torch.rand(1, 2),
                                      -torch.rand(2, 4), torch.randn(1, 3), torch.randn(1, 3)),
     ValueError, r"A must have shape \(2, 3\)"),
    (lambda: K.selective_state_update(torch.zeros(1, 6, 3), torch.randn(1, 6), torch.rand(1, 6),
                                      -torch.rand(6, 3), torch.randn(1, 2, 3), torch.randn(1, 3, 3)),
     ValueError, "B and C have 2 and 3 groups"),
    (lambda: K.vandermonde(torch.randn(2, 3), torch.randn(2, 3), 4), TypeError, "coef must be complex"),
    (lambda: K.vandermonde(*OPS["vandermonde"]()[:2], 0), ValueError, "L must be a positive"),
    (lambda: K.vandermonde(*OPS["vandermonde"]()[:2], 2.5), TypeError, "L must be an integer"),
    (lambda: K.s4d_kernel(*[torch.ones(2, 3, dtype=torch.complex64)] * 3, torch.ones(2), 4,
                          discretization="euler"), ValueError, "discretization must be"),
    (lambda: K.s4d_kernel(*[torch.ones(2, 3, dtype=torch.complex64)] * 3, torch.ones(3), 4),
     ValueError, r"dt must have shape \(2,\)"),
    (lambda: K.cauchy(torch.randn(2, 3, dtype=torch.complex64), torch.randn(4, dtype=torch.complex64),
                      torch.randn(2, 4, dtype=torch.complex64)), ValueError, "share their last"),
    (lambda: K.fft_conv(torch.randn(1, 2, 4), torch.randn(2, 5)), ValueError, r"Lk <= L=4"),
    (lambda: K.fft_conv(torch.randn(1, 2, 4), torch.randn(3, 4)), ValueError, r"k must have shape"),
    (lambda: K.s4d_conv(torch.randn(2, 5, 3), *OPS["s4d_conv"]()[1:3], torch.randn(4)),
     ValueError, r"D must have shape \(3,\)"),
    (lambda: K.s4d_conv(torch.randn(2, 5, 4), *OPS["s4d_conv"]()[1:3]), ValueError,
     r"shape \(H=4, N\) or \(b=2, H=4, N\)"),
    (lambda: K.s4d_conv(torch.randn(2, 5, 3), torch.randn(3, 4), torch.randn(3, 4)), TypeError,
     "log_z must be complex"),
])
def test_other_ops_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("op", sorted(OPS))
def test_auto_keeps_double_precision_on_the_reference(op, fake_triton, monkeypatch):
    """Triton kernels compute in float32: auto must not send float64/complex128 work to them."""
    monkeypatch.setattr(_dispatch, "_device_problem", lambda tensors, interpret_ok: None)
    single = OPS[op]()
    assert _dispatch.resolve(op, "auto", *single) is not getattr(reference, op)  # "CUDA" float32
    double = tuple(a.double() if isinstance(a, torch.Tensor) and not a.is_complex()
                   else a.to(torch.complex128) if isinstance(a, torch.Tensor) else a
                   for a in single)
    assert _dispatch.resolve(op, "auto", *double) is getattr(reference, op)


def test_available_backends_names_ops(fake_triton):
    assert _dispatch.available_backends("cauchy") == ["torch", "triton"]
    assert _dispatch.available_backends("s4d_kernel") == ["torch", "triton"]  # via vandermonde
    assert _dispatch.available_backends("fft_conv") == ["torch"]
    assert _dispatch.available_backends("s4d_conv") == ["torch", "triton"]
    with pytest.raises(ValueError, match="unknown kernel op"):
        _dispatch.available_backends("no_such_op")


def test_uses_triton_follows_the_dispatch(fake_triton, monkeypatch):
    """The S4D layer's choice of formulation: True exactly where auto would run Triton."""
    args = OPS["s4d_conv"]()
    assert not _dispatch.uses_triton("s4d_conv", *args)  # CPU tensors
    monkeypatch.setattr(_dispatch, "_device_problem", lambda tensors, interpret_ok: None)
    assert _dispatch.uses_triton("s4d_conv", *args)
    monkeypatch.setenv("SSMSIGNAL_BACKEND", "torch")
    assert not _dispatch.uses_triton("s4d_conv", *args)
