"""Static look at the selective scan's forward kernel without a GPU: compile ``fwd_kernel`` for
sm_90 with Triton (as a launch at the first benchmark shape would specialise it: pointers and
16-multiples marked divisible), disassemble it with the ``nvdisasm`` Triton ships, and print the
register cap, spills, the loop body's instruction mix and a one-letter-per-instruction map of it
(M MUFU, S SHFL, s LDS/STS, G LDG, W STG, B BAR, f FFMA, m FMUL, a FADD, L local memory).

    python -m ssmsignal.kernels.bench.fwd_sass [NAME=VALUE ...]   # constexpr overrides

e.g. ``AHOIST=0 GRID_SWAP=False LD_POLICY= ST_CACHE=`` for session 4's forward. ``--out DIR``
also writes the SASS, PTX and TTGIR there. Used for the static counts in ``kernels/NOTES.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from collections import Counter

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ssmsignal.kernels.triton import selective_scan as _ss
from ssmsignal.kernels.triton._selective_scan_fwd import fwd_kernel

#: Pointer arguments and their element types at the benchmark's bf16 shape.
_PTRS = {"u_ptr": "*bf16", "dt_ptr": "*bf16", "A_ptr": "*fp32", "B_ptr": "*bf16",
         "C_ptr": "*bf16", "D_ptr": "*fp32", "z_ptr": "*bf16", "bias_ptr": "*fp32",
         "len_ptr": "*i32", "out_ptr": "*bf16", "last_ptr": "*fp32", "ck_ptr": "*fp32",
         "y_ptr": "*bf16", "h0_ptr": "*fp32", "sdt_ptr": "*fp32"}
#: The shipped launch at (8, 1536, 4096, 16) without gradients (selective_scan._forward).
_CONST = dict(T=16, NI=4, NO=4, W=1, DL=8, HAS_D=True, HAS_Z=True, HAS_BIAS=True,
              SOFTPLUS=True, HAS_LEN=False, SAVE_CK=False, CK=8, SAVE_LAST=False, EVEN=True,
              SEG=False, LOCAL=False, FAST=False, FAST_GATE=False, FMA=True, CK_V4=True, XCH=1,
              PIPE=False, SP_POLY=False, EXP_FMA=0, CKL=0)


def shipped_const():
    """The constexprs of the shipped forward launch without gradients at that shape (the
    session-5 switches read from ``selective_scan``'s module constants)."""
    return dict(_CONST, GRID_SWAP=_ss.FWD_GRID_SWAP, **_ss._hints(True),
                AHOIST=1 if _ss.FWD_A_HOIST else 0)
_CLASSES = (("MUFU", "M"), ("SHFL", "S"), ("LDS", "s"), ("STS", "s"), ("LDG", "G"),
            ("STG", "W"), ("BAR", "B"), ("FFMA", "f"), ("FMUL", "m"), ("FADD", "a"),
            ("LDL", "L"), ("STL", "L"))


def compile_fwd(const, maxnreg=168, L=4096, d=1536):
    """The compiled kernel (``triton.compile`` for sm_90, no GPU needed)."""
    ints = dict(L=L, dim=d, N=16, G=1, ch_per_group=d, block_ch=const["W"] * const["DL"],
                n_chunks=L // const["T"], n_ck=0, seg_chunks=L // const["T"], n_seg=1)
    sig, attrs = {}, {}
    for i, name in enumerate(fwd_kernel.arg_names):
        if name in _PTRS:
            sig[name], attrs[(i,)] = _PTRS[name], [["tt.divisibility", 16]]
        elif name in ints:
            sig[name] = "i32"
            if ints[name] % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[name] = "constexpr"
    src = ASTSource(fwd_kernel, sig, {k: v for k, v in const.items()
                                      if k in fwd_kernel.arg_names}, attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=const["W"], maxnreg=maxnreg))


def disassemble(kernel):
    """SASS of a compiled kernel (``nvdisasm`` from Triton's NVIDIA backend), or None when this
    Triton has none."""
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                            "nvdisasm")
    if not os.path.exists(nvdisasm):
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        return subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True,
                              check=True).stdout


def loop_body(sass):
    """Instructions of the longest backward branch's span (the chunk loop)."""
    ins, labels, label = [], {}, None
    for line in sass.splitlines():
        m = re.match(r"\.L_x_(\d+):", line.strip())
        if m:
            label = m.group(1)
            continue
        m = re.match(r"\s+/\*([0-9a-f]+)\*/\s+(.*?);", line)
        if m:
            addr = int(m.group(1), 16)
            ins.append((addr, m.group(2)))
            if label is not None:
                labels[label], label = addr, None
    span = (0, -1)
    for addr, text in ins:
        m = re.search(r"BRA.*\.L_x_(\d+)", text)
        if m and labels.get(m.group(1), addr) < addr and addr - labels[m.group(1)] > span[1] - span[0]:
            span = (labels[m.group(1)], addr)
    return [text for addr, text in ins if span[0] <= addr <= span[1]]


def opcode(text):
    """The opcode of a SASS instruction (its predicate dropped), e.g. ``LDG.E.128``."""
    return re.sub(r"^@!?U?P\w+\s+", "", text).split()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="constexpr NAME=VALUE")
    ap.add_argument("--maxnreg", type=int, default=168)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    const = shipped_const()
    for kv in args.overrides:
        k, v = kv.split("=")
        const[k] = (int(v) if v.lstrip("-").isdigit() else v == "True" if v in ("True", "False")
                    else v)  # (a string: LD_POLICY=evict_first, LD_CACHE= for none)
    k = compile_fwd(const, args.maxnreg)
    sass = disassemble(k)
    if sass is None:
        raise SystemExit("this triton has no nvdisasm")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        for ext, text in (("sass", sass), ("ptx", k.asm["ptx"]), ("ttgir", k.asm["ttgir"])):
            with open(os.path.join(args.out, f"fwd_kernel.{ext}"), "w") as f:
                f.write(text)
    body = loop_body(sass)
    ops = Counter(opcode(t).split(".")[0] for t in body)
    local = sum(1 for line in sass.splitlines() if re.search(r"\b(LDL|STL)\b", line))
    regs = re.search(r"\.maxnreg (\d+)", k.asm["ptx"])
    print(f"register cap {regs.group(1) if regs else 'none'}; local-memory (spill) "
          f"instructions in the kernel: {local}")
    print(f"loop body: {len(body)} instructions;", dict(ops.most_common()))
    letters = "".join(next((c for p, c in _CLASSES if opcode(t).startswith(p)), ".")
                      for t in body)
    for i in range(0, len(letters), 80):
        print(f"{i:4d} {letters[i:i + 80]}")


if __name__ == "__main__":
    main()
