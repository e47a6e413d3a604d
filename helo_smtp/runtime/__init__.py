"""What runs the relay process: node identity and the delivery process's supervision."""
