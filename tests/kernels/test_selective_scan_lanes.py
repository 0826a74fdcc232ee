"""The selective scan's lane-shuffle layout check (``_common.lane_layout_errors``) and the
launcher's fallback to the kernels without shuffles (``selective_scan._launch``), on the CPU
with hand-written TTGIR (no compilation)."""

from __future__ import annotations

#: TTGIR layouts as Triton prints them: lanes along axes 0 (bits 0-2) and 1 (bits 3-4), as the
#: selective scan's shuffles assume, and two that are not (axes swapped; a warp along axis 1).
_LAYOUTS = {
    "good": "#ttg.blocked<{sizePerThread = [1, 1, 1, 1, 4], threadsPerWarp = [8, 4, 1, 1, 1], "
            "warpsPerCTA = [1, 1, 4, 1, 1], order = [4, 0, 1, 2, 3]}>",
    "good_linear": "#ttg.linear<{register = [[0, 0, 0, 0, 1]], lane = [[1, 0, 0, 0, 0], "
                   "[2, 0, 0, 0, 0], [4, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 2, 0, 0, 0]], "
                   "warp = [[0, 0, 1, 0, 0]], block = []}>",
    "swapped": "#ttg.blocked<{sizePerThread = [1, 1, 1, 1, 4], threadsPerWarp = [8, 4, 1, 1, 1], "
               "warpsPerCTA = [1, 1, 4, 1, 1], order = [4, 1, 0, 2, 3]}>",
    "warp_on_1": "#ttg.linear<{register = [[0, 0, 0, 0, 1]], lane = [[1, 0, 0, 0, 0], "
                 "[2, 0, 0, 0, 0], [4, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 2, 0, 0, 0]], "
                 "warp = [[0, 4, 0, 0, 0]], block = []}>",
}


def _ttgir(name):
    """A one-op TTGIR text: an inline-asm shuffle whose operands have layout ``name``."""
    t = "tensor<8x4x4x1x4xf32, #L>"
    return (f"#L = {_LAYOUTS[name]}\n  %y = tt.elementwise_inline_asm \"shfl.sync.bfly.b32\" "
            f"{{pure = true}} %x, %m : {t}, {t} -> {t}\n")


def test_lane_layout_check_and_fallback():
    """The shuffles' layout check, and the launcher's second launch without them."""
    from types import SimpleNamespace

    from ssmsignal.kernels.triton import selective_scan as mod
    from ssmsignal.kernels.triton._common import lane_layout_errors

    assert not lane_layout_errors(_ttgir("good")) and not lane_layout_errors(_ttgir("good_linear"))
    assert lane_layout_errors(_ttgir("swapped")) and lane_layout_errors(_ttgir("warp_on_1"))
    # inline asm that is no shuffle (the forward's anchored move of A) works in any layout
    other = _ttgir("swapped").replace("shfl.sync.bfly.b32", "mov.b32 $0, $1;")
    assert "elementwise_inline_asm" in other and not lane_layout_errors(other)

    class Kernel:  # records each launch's switches; its compiled form has the given layout
        fn = SimpleNamespace(__name__="fake")

        def __init__(self, layout):
            self.compiled, self.calls = SimpleNamespace(asm={"ttgir": _ttgir(layout)}), []

        def __getitem__(self, grid):
            return lambda *args, **kw: self.calls.append(kw["XCH"]) or self.compiled

    for layout, mode, calls in [("good", 1, [1, 1]), ("swapped", 1, [1, 0, 1, 0]),
                                ("swapped", 2, [2, 2])]:
        kernel = Kernel(layout)
        for _ in range(2):  # the check runs once per compiled kernel, the fallback every time
            mod._launch(kernel, (1,), (), dict(XCH=mode), ("XCH",))
        assert kernel.calls == calls, (layout, mode, kernel.calls)
