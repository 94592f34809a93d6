"""Benchmarks of the monitor (`python -m bench`, `make bench`): throughput, idle cycles,
history growth, extraction, alert latency and memory, each against its baseline."""
