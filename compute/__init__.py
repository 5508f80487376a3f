"""Everything that consumes data: array backend, models, parameter sharding, trainers."""
