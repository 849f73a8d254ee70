"""Allow ``python -m cyclekit`` (used by torchrun)."""
import sys

from cyclekit.cli import main

sys.exit(main())
