"""Throughput, memory and overhead benchmarks for every stage of the platform (`make bench`)."""
