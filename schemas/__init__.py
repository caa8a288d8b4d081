"""Avro schemas of every message on every topic, and the codec that reads and writes them."""
