"""Benchmarks for aplkit: compute throughput against plain baselines, memory, and label efficiency.

Run ``python -m bench compute [--quick]`` (or ``aplkit bench compute``); see bench/README.md.
"""
