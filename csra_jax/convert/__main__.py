r"""Converts a PyTorch checkpoint into an orbax checkpoint csra_jax can restore.

    python -m csra_jax.convert --source csra --arch resnet101 --num_classes 80 \
        --num_heads 4 --lam 0.5 IN.pth OUT_DIR

``--sha256 HEX`` first checks IN against the digest its publisher gives (all 64 hex
digits, or a prefix of at least 8 such as the one in torchvision file names).

OUT_DIR then holds ``model.json`` and ``variables/``; restore with
``csra_jax.convert.load_converted(OUT_DIR)`` or point a config's ``init_checkpoint`` at it.
"""

from __future__ import annotations

import argparse
import sys

import jax

from csra_jax import cli_args
from csra_jax.convert.converted_checkpoint import save_converted
from csra_jax.convert.sha256 import check_sha256
from csra_jax.convert.state_dict_io import load_state_dict
from csra_jax.convert.torch_to_flax import SOURCES, _example_input, convert_state_dict
from csra_jax.models.classifier import available_archs, create_model
from csra_jax.models.registry import available_heads


def parse_args(argv):
    p = cli_args.parser("csra_jax.convert", __doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--arch", required=True, choices=available_archs())
    p.add_argument("--num_classes", type=int, required=True)
    p.add_argument("--head", default="csra", choices=available_heads())
    p.add_argument("--num_heads", type=int, default=1)
    p.add_argument("--lam", type=float, default=0.1)
    p.add_argument("--image_size", type=int, default=448, help="input resolution (sizes "
                   "a ViT's position embedding)")
    # The first releases spelt it --img-size; still accepted, not listed.
    p.add_argument("--img_size", dest="image_size", type=int, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    p.add_argument("--sha256", default="", metavar="HEX",
                   help="expected sha256 of the input file (full or >= 8-digit prefix)")
    p.add_argument("input", help=".pth/.pt/.safetensors state_dict")
    p.add_argument("out_dir", help="directory to create (must not hold a checkpoint)")
    return cli_args.parse(p, argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Every head's build takes num_heads and lam (those without such a choice ignore them).
    model_kwargs = dict(arch=args.arch, num_classes=args.num_classes, head=args.head,
                        num_heads=args.num_heads, lam=args.lam, img_size=args.image_size)
    try:
        if args.sha256:
            check_sha256(args.input, args.sha256)
        model = create_model(**model_kwargs)
        # An official CSRA file fills every leaf (a gap is an error), so shapes are enough
        # as the template, and model.init (a whole-network compile) is skipped.
        template = (jax.eval_shape(model.init, jax.random.key(0), _example_input(model))
                    if args.source == "csra" else None)
        variables, report = convert_state_dict(load_state_dict(args.input), model, args.source,
                                               init_variables=template)
        out = save_converted(args.out_dir, variables, model_kwargs)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        where = "" if args.input in str(e) else f"{args.input}: "
        print(f"error: {where}{e}", file=sys.stderr)
        return 2
    for line in report.unused_lines():  # e.g. a 1000-class fc next to a 10-class gap head
        print(f"note: {line}")
    print(f"wrote {out} ({args.arch}, {args.num_classes} classes, head={args.head})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
