"""Collect the audited fact sets' YAML expectations with `pytest audits` (same node ids as
`pytest factsets/landmarks.yaml`). The other shipped sets run with `pytest factsets`.

The two `_prefixed` sets are the position-0 control: the same facts with words before the
subject, so that the noise does not land on position 0 (SmolLM2 adds no BOS token, and
Llama-family models use position 0 as an attention sink); the README compares the two."""

from fact_locator.plugin.collection import FactSetFiles

audited = FactSetFiles(
    "../factsets/landmarks.yaml",
    "../factsets/cities.yaml",
    "../factsets/landmarks_prefixed.yaml",
    "../factsets/cities_prefixed.yaml",
)
