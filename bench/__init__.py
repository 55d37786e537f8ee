"""Benchmarks and fault runs that print figures (conventions: "Speed and memory targets live in bench/")."""
