"""The gradients of a ViT train step (the CPU attention and Dense backward passes) with
the batch sharded over every device against the same step on one device (run with 8
simulated CPU devices); prints the device count and the worst relative difference.

    python vit_sharded_grads.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from csra_jax import create_model

    model = create_model("vit_tiny", 5, img_size=32)
    images = jax.random.normal(jax.random.key(0), (jax.device_count(), 32, 32, 3))
    labels = (jax.random.uniform(jax.random.key(1), (images.shape[0], 5)) > 0.5)
    labels = labels.astype(jnp.float32)
    params = model.init(jax.random.key(2), images)["params"]

    def loss(p, x, y):
        logits = model.apply({"params": p}, x, train=True)
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

    grad = jax.jit(jax.grad(loss))
    single = grad(params, images, labels)
    batch = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), P("data"))
    sharded = grad(params, jax.device_put(images, batch), jax.device_put(labels, batch))
    worst = max(float(jnp.abs(a - b).max() / (jnp.abs(b).max() + 1e-12))
                for a, b in zip(jax.tree_util.tree_leaves(sharded),
                                jax.tree_util.tree_leaves(single)))
    print(f"devices {jax.device_count()} worst {worst:.3e}")


if __name__ == "__main__":
    main()
