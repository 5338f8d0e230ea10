"""A train-mode forward of resnet18 under jit with the batch sharded over every device
(run with 8 simulated CPU devices); prints the worst running-statistics difference from
torch's train-mode forward on the same global batch.

    python bn_sharded.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    import jax
    import torch
    import torchvision
    from jax.sharding import NamedSharding, PartitionSpec as P

    from csra_jax import create_model
    from csra_jax.convert import load_torch_weights
    from csra_jax.train.steps import make_mesh
    from torch_reference import randomize_bn, to_nchw

    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.resnet18(weights=None, num_classes=10), seed=4).train()
    model = create_model("resnet18", 10, head="gap", img_size=64)
    variables = load_torch_weights(ref.state_dict(), model, "torchvision")
    images = np.random.default_rng(0).uniform(size=(8, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        ref(to_nchw(images))
    expected = load_torch_weights(ref.state_dict(), model, "torchvision")["batch_stats"]

    mesh = make_mesh()
    rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1],
                   in_shardings=(rep, data), out_shardings=rep)
    stats = step(jax.device_put(variables, rep), jax.device_put(images, data))["batch_stats"]
    worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(expected)))
    print(f"devices {jax.device_count()} worst {worst:.3e}")


if __name__ == "__main__":
    main()
