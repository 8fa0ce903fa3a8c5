"""Evidence for auditors and on-call engineers, read back from the Dagster instance and the lakehouse:
trace a prediction to raw bytes, explain a prediction or a change, summarize what serves, bundle a
version's records, export lineage. Nothing here writes platform state; every file it cites is
verified against the sha256 recorded when it was written."""
