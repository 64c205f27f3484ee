"""StreamHouse: an S3-native event streaming platform that speaks the Kafka protocol."""

__version__ = "0.1.0"
