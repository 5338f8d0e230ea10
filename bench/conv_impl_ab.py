"""The library's train step under each ``model.conv_impl`` / ``pool_impl``, A/B in one process.

  python bench/conv_impl_ab.py                                   # small_cnn@128 b32 (the demo's)
  python bench/conv_impl_ab.py --arch resnet101 --size 448 --batch 4 --repeats 4
  python bench/conv_impl_ab.py --impls gemm_vjp:xla,gemm_vjp:masked   # max-pool backward A/B
  python bench/conv_impl_ab.py --quick                           # smoke: small_cnn@32 b4

A variant is ``conv_impl[:pool_impl]`` (pool_impl defaults to "auto").

Every variant is compiled ahead of time from the same initial variables and batch, then
the steps are interleaved round-robin (start rotating each round); prints each variant's
compile time, median step time and the median per-round time ratio to the first variant
(< 1: faster), and the largest parameter difference after three steps relative to
the first variant's (the impls differ by float rounding only).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp

import common  # bench/common.py (sets up sys.path for csra_jax)
from common import log

from csra_jax import create_model  # noqa: E402  (after common's sys.path)
from csra_jax.train import steps as steps_lib  # noqa: E402


def main(argv=None):
    p = common.doc_parser(__doc__)
    p.add_argument("--arch", default="small_cnn")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--head", default="csra")
    p.add_argument("--impls", default="gemm,gemm_vjp",
                   help="comma-separated conv_impl[:pool_impl] variants; ratios are to "
                        "the first")
    p.add_argument("--repeats", type=int, default=8, help="timed rounds")
    p.add_argument("--dtype", default="float32", choices=sorted(common.DTYPES))
    p.add_argument("--quick", action="store_true", help="smoke: small_cnn@32 b4, 2 rounds")
    a = p.parse_args(argv)
    if a.quick:
        a.arch, a.size, a.batch, a.repeats = "small_cnn", 32, 4, 2
        a.impls = "gemm,gemm_vjp:xla,xla:masked"
    impls = common.csv_list(a.impls)
    mesh = steps_lib.make_mesh()
    batch = common.synthetic_batch(a.batch, a.size, a.num_classes, mesh)
    print(f"# {common.describe_machine()}")
    runners, params = {}, {}
    variables = None
    for impl in impls:
        conv_impl, _, pool_impl = impl.partition(":")
        model = create_model(a.arch, a.num_classes, head=a.head, img_size=a.size,
                             dtype=common.DTYPES[a.dtype], conv_impl=conv_impl,
                             pool_impl=pool_impl or "auto")
        if variables is None:
            variables = common.init_variables(model, a.size)
        runner, secs, _ = common.build_train(model, variables, mesh, batch)
        for _ in range(3):  # from the shared initial state, for the parameter check (the
            runner()        # warm-up's first lr is 0, so one step would not move them)
        params[impl] = jax.tree.leaves(runner.state.params)
        runners[impl] = runner
        log(f"{impl}: compiled in {secs:.1f}s")
    base = impls[0]
    for impl in impls[1:]:
        diff = max(float(jnp.max(jnp.abs(u - v)) / (jnp.max(jnp.abs(v)) + 1e-12))
                   for u, v in zip(params[impl], params[base]))
        print(f"# {impl} vs {base}: params after three steps differ by {diff:.1e} (relative)")
    times = common.interleaved(runners, a.repeats, warmup=1, log=log)
    rows = []
    for impl in impls:
        ratio = common.median([t / b for t, b in zip(times[impl], times[base])])
        rows.append([f"{a.arch}@{a.size}", a.batch, a.dtype, impl,
                     f"{common.median(times[impl]):.3f}", f"{ratio:.3f}",
                     f"{a.batch / common.median(times[impl]):.1f}", common.spread(times[impl])])
    print(common.markdown_table(["model", "batch", "dtype", "conv[:pool]", "train step s",
                                 f"paired ratio to {base}", "img/s", "spread"], rows))


if __name__ == "__main__":
    main()
