"""The running relay: the daemon, the delivery process, signals, sdnotify, logs, metrics."""
