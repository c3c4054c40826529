"""The NATS bus (``[bus] backend = "nats"``): the second :class:`~loom_kernel.bus.Transport`.

- :mod:`.subjects`: Loom topics and patterns as NATS subjects;
- :mod:`.codec`: an envelope as a NATS message (headers + data);
- :mod:`.client`: :class:`NatsClient`, publish/subscribe/replies over NATS;
- :mod:`.jetstream`: ``reliable`` delivery through JetStream streams and durable consumers;
- :mod:`.connection`: a process's place on a NATS bus (the runtime's view of it);
- :mod:`.server`: local ``nats-server`` processes for development, benchmarks and tests.

nats-py is imported only when a client connects (``pip install 'loom-studio[nats]'``).
"""

from .client import NatsClient, NatsOptions
from .subjects import pattern_subject, subject_topic, topic_subject

__all__ = ["NatsClient", "NatsOptions", "pattern_subject", "subject_topic", "topic_subject"]
