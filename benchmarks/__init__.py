"""Speed and load benchmarks (run from the repository root; see benchmarks/README.md)."""
