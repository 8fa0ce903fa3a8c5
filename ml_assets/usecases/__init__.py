"""Registered use cases. Add a spec here (or load one from YAML) to get a new asset graph."""

from ml_assets.usecases.flight_delay import FLIGHT_DELAY

USE_CASES = (FLIGHT_DELAY,)
