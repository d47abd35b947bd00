"""Helpers shared by the test layers: tiny models built from configs, hand-built traces and
results, the `python:fl_tiny:<function>` test models, and the pytester harness."""
