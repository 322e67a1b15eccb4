"""Benchmarks for aplkit: compute throughput against plain baselines, memory, and label efficiency.

Run ``python -m bench compute [--quick]``; see bench/README.md.
"""
