"""The pure scheduling core: fair share, node placement and the scheduling cycle.

Nothing here touches Kafka, the network, the clock or asyncio; the scheduler service feeds
these functions the state it has folded from the log and writes their decisions back.
"""

from .cycle import QUEUE_CORDONED, UNKNOWN_QUEUE, job_order, schedule
from .fair_share import FairShareState, dominant_share, fair_shares, pick_queue, total_capacity
from .model import CycleResult, CycleStats, Lease, Node, Queue, QueuedJob, RunningJob, SchedulingConfig
from .node_db import (
    NO_NODE_MATCHES_SELECTOR,
    NO_SCHEDULABLE_NODES,
    TAINT_NOT_TOLERATED,
    NodeDb,
    NodeDbStats,
    job_shape,
    matches_selector,
    tolerates,
    untolerated_taint,
)

__all__ = [
    "NO_NODE_MATCHES_SELECTOR",
    "NO_SCHEDULABLE_NODES",
    "QUEUE_CORDONED",
    "TAINT_NOT_TOLERATED",
    "UNKNOWN_QUEUE",
    "CycleResult",
    "CycleStats",
    "FairShareState",
    "Lease",
    "Node",
    "NodeDb",
    "NodeDbStats",
    "Queue",
    "QueuedJob",
    "RunningJob",
    "SchedulingConfig",
    "dominant_share",
    "fair_shares",
    "job_order",
    "job_shape",
    "matches_selector",
    "pick_queue",
    "schedule",
    "tolerates",
    "total_capacity",
    "untolerated_taint",
]
