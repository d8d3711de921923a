"""The decoy: looks like a model server, but it only archives what it is sent.

`archiver` copies every record of scoring.requests into scoring.archive inside
Kafka transactions (nothing lost, nothing doubled); `replay` reads any time
range of the archive back and scores it with the live extractor and model code.
"""
