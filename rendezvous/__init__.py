"""The rendezvous: one answer per request, within the SLA, compared with the canary."""
