-- A flight's (year, month, day, hour) columns are its scheduled departure's local date and hour;
-- `_event_time` is `time_hour` (UTC) converted to America/New_York.
make_date(year, month, day) = CAST(_event_time AS DATE)
AND hour = hour(_event_time)
