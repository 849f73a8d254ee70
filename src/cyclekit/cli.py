"""The ``cyclekit`` command line.

Subcommands live in :mod:`cyclekit.commands`; each module there has ``register(subparsers)``
and keeps heavy imports (torch, cv2, onnx, ...) inside its ``run`` function so that
``cyclekit --help`` answers instantly. User mistakes (``UserError``) become one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Optional, Sequence

from cyclekit import __version__
from cyclekit.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from cyclekit.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="cyclekit",
        description="Unpaired image-to-image translation with CycleGAN: train, translate, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"cyclekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)  # no command given: a usage error
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    ours = not logging.root.handlers  # called from a program with its own logging: leave it alone
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        # our log lines go above a progress bar, not into it
        with logging_redirect_tqdm() if ours else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"cyclekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cyclekit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
