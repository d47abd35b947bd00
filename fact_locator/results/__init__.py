"""Results: what an audit run measured and decided. Reports and `compare` read only these.

- `schema`: the results file (`RunResults` and its parts), saved and loaded as JSON.
- `builder`: `ResultsBuilder` turns what the plugin records while items run into `RunResults`.
- `merge`: `merge_results` joins the results of parts of one run (xdist workers, CI shards).
- `files`: `write_atomic`, how every output file is written.
"""

from fact_locator.results.builder import FactSetRecord, RecordedOutcome, ResultsBuilder
from fact_locator.results.files import write_atomic
from fact_locator.results.merge import SETTINGS_THAT_MUST_MATCH, merge_conflict, merge_results
from fact_locator.results.schema import (
    OUTCOMES,
    RESULTS_SCHEMA_VERSION,
    AuditOutcome,
    FactResult,
    FactSetResult,
    RunResults,
)

__all__ = [
    "OUTCOMES",
    "RESULTS_SCHEMA_VERSION",
    "SETTINGS_THAT_MUST_MATCH",
    "AuditOutcome",
    "FactResult",
    "FactSetRecord",
    "FactSetResult",
    "RecordedOutcome",
    "ResultsBuilder",
    "RunResults",
    "merge_conflict",
    "merge_results",
    "write_atomic",
]
