r"""Demo baseline: configs/demo.py with the GAP head (average pooling + linear), same budget.

    python -m csra_jax.main --config configs/demo_gap.py --workdir /tmp/csra_demo_gap

Also the model for the training-free sweep (paper Fig. 1):
    python -m csra_jax.main --config configs/demo_gap.py --workdir /tmp/csra_demo_gap \
        --config.mode=lambda_sweep
"""

from csra_jax.config import sibling_config


def get_config():
    c = sibling_config(__file__, "demo")
    c.model.head = "gap"
    return c
