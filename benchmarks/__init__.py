"""rivers benchmarks: each module prints its figures."""
