"""The shipped selective-scan forward, compiled for sm_90 on the CPU machine (no GPU: Triton's
own ptxas and nvdisasm), keeps the properties its speed rests on (kernels/NOTES.md, session 5):
no load of A in the chunk loop (hoisted; the in-loop load is only Triton's layout anchor), the
lane layout its shuffles assume, 44 shuffles per chunk, no spills at its register cap."""

from __future__ import annotations

import re

import pytest


def test_shipped_forward_loop_sass():
    pytest.importorskip("triton")
    from ssmsignal.kernels.bench import fwd_sass
    from ssmsignal.kernels.triton._common import lane_layout_errors

    k = fwd_sass.compile_fwd(fwd_sass.shipped_const())
    sass = fwd_sass.disassemble(k)
    if sass is None:
        pytest.skip("this triton wheel has no nvdisasm")
    body = fwd_sass.loop_body(sass)
    ops = [fwd_sass.opcode(t) for t in body]
    loads = [o for o in ops if o.startswith("LDG")]
    # u, delta, z (8 bytes a lane) and B, C (16): the next chunk's; no load of A
    assert sorted(loads) == sorted(["LDG.E.EF.64"] * 3 + ["LDG.E.128"] * 2), loads
    assert sum(o.startswith("SHFL") for o in ops) == 44
    assert sum(o.startswith("MUFU") for o in ops) == 76
    assert not re.search(r"\b(LDL|STL)\b", sass)
    assert not lane_layout_errors(k.asm["ttgir"])
    assert len(body) < 711  # session 4's loop, with the four loads of A
