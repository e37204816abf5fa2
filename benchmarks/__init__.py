"""Measured comparisons for remsvc (issue #7): how fast it is and how cost grows.

Run ``python -m benchmarks`` from the repository root (``--quick`` for a short run,
``--smoke`` for the tiny one the test suite uses). Every figure that has a baseline
is measured in the same run as that baseline, round by round, and reported as a
ratio: on a shared 2-core machine absolute times alone say little.
"""
