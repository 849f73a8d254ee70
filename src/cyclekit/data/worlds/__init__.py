"""The synthetic worlds behind :mod:`cyclekit.data.synthetic` (one module per world)."""
