"""What the example participants share beyond the kit: configuration, failure
injection, the table of compensable records and the server factory."""
