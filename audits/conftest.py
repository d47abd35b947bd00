"""The shipped audits: `pytest audits` runs the paper's claims on the built-in model.

The YAML expectations of the audited fact sets (factsets/landmarks.yaml, factsets/cities.yaml)
are collected by audits/test_factsets.py; the Python audits of the paper's figures are in
audits/test_paper_claims.py. Any --fl-* option applies (e.g. --fl-samples 10, --fl-model).
"""
