"""Online scoring: a FastAPI app that scores single events or batches with the production model, from
the same feature SQL as batch (over the `serving_state` asset), and logs every prediction as data.

- `state.py`: the history state online features need (built by the `serving_state` asset) and the
  per-partition DuckDB connection that runs the one feature query over (state + incoming events);
- `validation.py`: request checks from the use case's declared columns (types, ranges, allowed values);
- `model.py`: the production pointer watcher and atomic model snapshots;
- `log.py`: the append-only prediction log (JSONL segments) and its reader;
- `metrics.py`: Prometheus metrics of the service and the platform-state collector;
- `app.py`: `create_app`; `server.py`: `mlp serve` on uvicorn.
"""
