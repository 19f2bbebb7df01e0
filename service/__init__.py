"""lrtower's server: the schedule engine and the REST service (imports as `lrtower_server`)."""
