"""CLI subcommands. Each module: ``register(subparsers)``; heavy imports inside ``run``."""
from cyclekit.commands import data, distill, eval, export, info, quickstart, serve, swap, train, translate

COMMANDS = [quickstart, train, translate, swap, eval, data, info, serve, export, distill]
