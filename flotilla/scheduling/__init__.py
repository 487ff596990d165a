"""The pure scheduling core: fair share, node placement, preemption and the scheduling cycle.

Nothing here touches Kafka, the network, the clock or asyncio; the scheduler service feeds
these functions the state it has folded from the log and writes their decisions back.
"""

from .cycle import QUEUE_CORDONED, UNKNOWN_PRIORITY_CLASS, UNKNOWN_QUEUE, job_order, schedule
from .deadlines import expired_runs
from .eligibility import matches_node_affinity, matches_selector, tolerates, untolerated_taint
from .fair_share import (
    adjusted_fair_shares,
    dominant_share,
    fair_shares,
    total_capacity,
)
from .model import (
    ARMADA_PRIORITY_CLASSES,
    GANG_CARDINALITY_ANNOTATION,
    GANG_ID_ANNOTATION,
    GANG_NODE_UNIFORMITY_LABEL_ANNOTATION,
    IMPLICIT_PRIORITY_CLASS,
    CycleResult,
    CycleStats,
    Lease,
    Node,
    NodeDbStats,
    PoolStats,
    PriorityClass,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    node_affinity_terms,
)
from .node_db import (
    EVICTED_LEVEL,
    NO_NODE_MATCHES_AFFINITY,
    NO_NODE_MATCHES_SELECTOR,
    NO_SCHEDULABLE_NODES,
    TAINT_NOT_TOLERATED,
    NodeDb,
    fits,
)

__all__ = [
    "ARMADA_PRIORITY_CLASSES",
    "EVICTED_LEVEL",
    "GANG_CARDINALITY_ANNOTATION",
    "GANG_ID_ANNOTATION",
    "GANG_NODE_UNIFORMITY_LABEL_ANNOTATION",
    "IMPLICIT_PRIORITY_CLASS",
    "NO_NODE_MATCHES_AFFINITY",
    "NO_NODE_MATCHES_SELECTOR",
    "NO_SCHEDULABLE_NODES",
    "QUEUE_CORDONED",
    "TAINT_NOT_TOLERATED",
    "UNKNOWN_PRIORITY_CLASS",
    "UNKNOWN_QUEUE",
    "CycleResult",
    "CycleStats",
    "Lease",
    "Node",
    "NodeDb",
    "NodeDbStats",
    "PoolStats",
    "PriorityClass",
    "Queue",
    "QueuedJob",
    "RunningJob",
    "SchedulingConfig",
    "adjusted_fair_shares",
    "dominant_share",
    "expired_runs",
    "fair_shares",
    "fits",
    "job_order",
    "matches_node_affinity",
    "matches_selector",
    "node_affinity_terms",
    "schedule",
    "tolerates",
    "total_capacity",
    "untolerated_taint",
]
