"""The service around the engine: settings, listeners, admin, metrics and logging."""
