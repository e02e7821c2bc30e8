"""Command line: ``torchspex demo`` explains a real model end to end."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from torchspex._demo import run_demo

    run_demo(output=args.output, index=args.index, max_order=args.max_order, seed=args.seed)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``torchspex`` command."""
    parser = argparse.ArgumentParser(prog="torchspex", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train a small MLP on scikit-learn's breast-cancer data, explain one prediction "
        "with interactions, print the strongest ones and write a plot",
    )
    demo.add_argument("--output", default="torchspex_demo.png", help="where to write the plot")
    demo.add_argument("--index", default="FSII", help="interaction index (default FSII)")
    demo.add_argument("--max-order", type=int, default=2, help="order cap (default 2)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
