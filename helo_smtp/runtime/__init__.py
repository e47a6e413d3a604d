"""The running relay: the daemon, the delivery process, signals, sdnotify, logs, metrics,
reload (reloadplan.py) and start-up errors (startup.py)."""
