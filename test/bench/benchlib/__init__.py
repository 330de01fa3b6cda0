"""The benchmark driver's parts (test/bench/bench.py): processes, runs,
the report, and the idle and wine-requests measurements."""
