"""The machine's matrix-multiply rates per framework, kernel library and dtype.

  python bench/gemm_rates.py                # n = 2048, 10 interleaved rounds
  python bench/gemm_rates.py --quick        # smoke: n = 256, 2 rounds

Why figures move between CPUs: XLA:CPU, PyTorch's `matmul` (which dispatches float32 to
the BLAS it was built with, MKL in the PyPI wheels) and PyTorch's convolutions (oneDNN)
each pick their kernels from the CPU's instruction sets on their own, so on one CPU a
framework's float32 GEMM can run at its AVX-512 rate while another falls back to AVX2,
and bfloat16 runs at twice the float32 rate only where a library uses the CPU's bf16
dot instructions (AVX512-BF16, AMX). `bench/vs_torch.py`'s ratios are ratios of those
kernels as much as of the two implementations; this prints the kernels alone.

Each row is one n x n x n product (2 n^3 FLOPs), timed as the median of interleaved
rounds (all rows called once per round, rotating order) after one warm-up call:
a jitted `jnp.dot` in float32 and bfloat16 (float32 result, as our bf16 models compute
their dots on CPU; and a bfloat16 result, which XLA:CPU runs on a slower kernel),
`torch.mm` in both dtypes, and a 1x1 channels_last convolution with the same
multiply-adds (oneDNN, the kernel PyTorch's ResNets run on), under `inference_mode`.
Threads: XLA's CPU backend uses every core; `torch.set_num_threads(--threads)` (default:
all cores).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import torch

import common  # bench/common.py (sets up sys.path for csra_jax)

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags() -> str:
    """The instruction sets above that /proc/cpuinfo lists (Linux), or '?' elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return "?"
    return " ".join(f for f in CPU_FLAGS if f in flags) or "none of " + "/".join(CPU_FLAGS)


def jax_dot(n: int, dtype, result=jnp.float32):
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=result))
    compiled = f.lower(a, a).compile()
    return lambda: jax.block_until_ready(compiled(a, a))


def torch_mm(n: int, dtype):
    a = torch.randn(n, n).to(dtype)

    def call():
        with torch.inference_mode():
            return torch.mm(a, a)
    return call


def torch_conv1x1(n: int, dtype):
    """A 1x1 conv from n to n channels over side^2 ~ n pixels: ~n^3 multiply-adds."""
    side = int(round(n ** 0.5))
    conv = torch.nn.Conv2d(n, n, 1, bias=False).to(dtype=dtype,
                                                   memory_format=torch.channels_last)
    x = torch.randn(1, n, side, side).to(dtype).contiguous(memory_format=torch.channels_last)

    def call():
        with torch.inference_mode():
            return conv(x)
    return call, 2 * n * n * side * side


def main(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--quick", action="store_true", help="smoke: n = 256, 2 rounds")
    a = p.parse_args(argv)
    n, rounds = (256, 2) if a.quick else (a.n, a.rounds)
    torch.set_num_threads(a.threads)
    print(f"# {common.describe_machine()}; cpu flags: {cpu_flags()}")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"MKL {'yes' if torch.backends.mkl.is_available() else 'no'}, "
          f"oneDNN {'yes' if torch.backends.mkldnn.is_available() else 'no'}")
    fns = {}  # (framework, kernel, dtype) -> (call, FLOPs per call)
    for name, dtype, torch_dtype in (("float32", jnp.float32, torch.float32),
                                     ("bfloat16", jnp.bfloat16, torch.bfloat16)):
        fns[("jax", "jnp.dot (XLA:CPU)", name)] = jax_dot(n, dtype), 2 * n ** 3
        if name == "bfloat16":
            fns[("jax", "jnp.dot (XLA:CPU), bf16 result", name)] = (jax_dot(n, dtype, dtype),
                                                                    2 * n ** 3)
        fns[("torch", "torch.mm (BLAS)", name)] = torch_mm(n, torch_dtype), 2 * n ** 3
        fns[("torch", "1x1 conv channels_last (oneDNN)", name)] = torch_conv1x1(n, torch_dtype)
    times = common.interleaved({" ".join(key): fn for key, (fn, _) in fns.items()}, rounds)
    f32_rate = {}  # kernel (without its result note) -> its float32 rate, the first row
    rows = []
    for key, (_, flops) in fns.items():
        ts = times[" ".join(key)]
        rate = flops / common.median(ts) / 1e9
        base = f32_rate.setdefault(key[1].split(",")[0], rate)
        rows.append([*key, f"{rate:.0f}", f"{rate / base:.2f}x", common.spread(ts)])
    print(f"# n = {n}; medians of {rounds} interleaved rounds; bf16 vs f32 = this "
          "kernel's bfloat16 rate over its float32 rate")
    print(common.markdown_table(["framework", "kernel", "dtype", "GFLOP/s", "bf16 vs f32",
                                 "spread"], rows))


if __name__ == "__main__":
    main()
