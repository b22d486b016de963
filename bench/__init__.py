"""chatlog's benchmarks: `make bench` / `make bench-quick`."""
