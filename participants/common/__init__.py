"""Building blocks shared by every participant service: local state, the
idempotent command path, errors, failure injection and the server factory."""
