"""Scanning a hub at scale: a monitor that keeps repositories' verdicts current, a durable job
queue with workers, a results store, a REST API with a dashboard, alerts and metrics.

Everything here is optional (`pip install 'malhug[service]'`); the scanner never imports it.
"""
