"""Side-by-side benchmarks (run as scripts: python -m ssmsignal.kernels.bench.bench_<op>)."""
