"""Events: the raw contract, the traffic population model, the wire stream, Kafka I/O."""
