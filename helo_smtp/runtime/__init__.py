"""Running the relay: start-up, reload and the pieces the daemon wires together."""
