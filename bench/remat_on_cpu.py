"""Does ``model.remat`` recompute anything on this backend? Counts convolutions and
optimization barriers in the train gradient before XLA (StableHLO) and after (compiled
HLO), and the compiled temp buffers, with and without remat.

    python bench/remat_on_cpu.py [--arch resnet18 --size 64 --batch 2]

On XLA:CPU the barriers JAX places around rematerialised blocks are gone from the
compiled HLO and the recomputed convolutions are merged back into the forward ones, so
remat changes neither the FLOPs nor the temp memory there (bench/RESULTS.md).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import csra_jax  # noqa: E402


def counts(arch: str, size: int, batch: int, remat: bool) -> dict:
    model = csra_jax.create_model(arch, 10, head="csra", img_size=size, remat=remat)
    x = jnp.zeros((batch, size, size, 3))
    v = jax.jit(model.init)(jax.random.key(0), x)

    def loss(params):
        out, _ = model.apply({"params": params, "batch_stats": v.get("batch_stats", {})}, x,
                             train=True, mutable=["batch_stats"])
        return out.sum()

    lowered = jax.jit(jax.grad(loss)).lower(v["params"])
    before = lowered.as_text()
    compiled = lowered.compile()
    after = compiled.as_text()
    return {"stablehlo convs": before.count("stablehlo.convolution"),
            "stablehlo barriers": before.count("optimization_barrier"),
            "compiled convs": after.count(" convolution("),
            "compiled barriers": after.count("opt-barrier("),
            "temp MiB": round(compiled.memory_analysis().temp_size_in_bytes / 2 ** 20, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    a = p.parse_args()
    rows = {r: counts(a.arch, a.size, a.batch, r) for r in (False, True)}
    keys = list(rows[False])
    print(f"# {a.arch}@{a.size} batch {a.batch}, backend {jax.default_backend()}, jax {jax.__version__}")
    print("| remat | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for r, row in rows.items():
        print(f"| {r} | " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
