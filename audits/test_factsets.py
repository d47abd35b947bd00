"""Collect the audited fact sets' YAML expectations with `pytest audits` (same node ids as
`pytest factsets/landmarks.yaml`). The other shipped sets run with `pytest factsets`."""

from fact_locator.plugin.collection import FactSetFiles

audited = FactSetFiles("../factsets/landmarks.yaml", "../factsets/cities.yaml")
