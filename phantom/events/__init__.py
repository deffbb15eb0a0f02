"""Events: the raw contract, the catalogue contract, Kafka I/O and the ingest store."""
