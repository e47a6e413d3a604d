"""The running relay: the daemon, the delivery process and its supervision, node identity,
signals, sdnotify, logs, metrics."""
