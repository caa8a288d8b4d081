"""Renkei: an information-linkage platform for a national number system, on Apache Kafka."""
