"""scorestream: Kafka-native streaming scoring on the rendezvous architecture."""

__version__ = "0.1.0"
