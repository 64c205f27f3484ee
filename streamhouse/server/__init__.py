"""Front doors (Kafka listener, REST, gRPC, metrics): arrive with the Kafka issue and later."""
