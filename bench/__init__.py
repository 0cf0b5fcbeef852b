"""Benchmarks for sticky-cluster: a standalone baseline server and a load generator."""
