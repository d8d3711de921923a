"""Savepoints, crash recovery and hot swap of the Flink jobs, through Flink's own REST API.

`rest` talks to a JobManager (the embedded mini cluster of a job or a session
cluster), `registry` keeps what lies under <home>/savepoints/<job>/ (the running
deployment, savepoints, retained checkpoints); rendezvous/recovery.py finds the
answers a crashed rendezvous already gave. See docs/savepoints.md.
"""
