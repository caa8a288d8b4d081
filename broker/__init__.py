"""Getting, starting and provisioning the Kafka broker Renkei runs on."""
