"""Sans-IO Kafka wire protocol: bytes in, typed values out."""
