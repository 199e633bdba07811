"""Speed and memory benchmarks; `make bench` (python -m benchmarks) prints their table."""
