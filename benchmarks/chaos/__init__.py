"""A chaos soak: constant load through the edge, faults from a seeded schedule, a verdict
on availability, latency, recovery and acknowledged writes (``orchestra-infra chaos``)."""
