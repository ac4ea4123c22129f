"""Exchange simulators that speak the brokers' real protocols, for development and tests."""
