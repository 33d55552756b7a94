"""The queue: durable spool, queue ids, envelopes, the queue manager.

spool = Spool(settings.queue_directory)
queue_id = await spool.enqueue(envelope, data)
manager = QueueManager(settings, spool, local_delivery, remote=...)
"""

from roost.queue.envelope import (
    DEFAULT_NOTIFY,
    Envelope,
    QueueFileError,
    Recipient,
    decode_queue_file,
    encode_queue_file,
)
from roost.queue.queueid import is_queue_id, new_queue_id
from roost.queue.spool import QueueEntry, QueueState, Spool

__all__ = [
    "DEFAULT_NOTIFY",
    "Envelope",
    "QueueEntry",
    "QueueFileError",
    "QueueState",
    "Recipient",
    "Spool",
    "decode_queue_file",
    "encode_queue_file",
    "is_queue_id",
    "new_queue_id",
]
