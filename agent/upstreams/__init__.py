"""Upstream model servers: one backend per kind behind one protocol (base.py), the pool, per-host queues."""
