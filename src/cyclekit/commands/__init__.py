"""CLI subcommands. Each module: ``register(subparsers)``; heavy imports inside ``run``."""
from cyclekit.commands import data, info, quickstart, train, translate

COMMANDS = [quickstart, train, translate, data, info]
