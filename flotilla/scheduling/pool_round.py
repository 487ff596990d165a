"""One pool's round of the scheduling cycle (steps 1 to 5 of :mod:`flotilla.scheduling.cycle`).

:class:`Pool` works out the active queues' fair shares, has the queues above their protected
share evicted (:mod:`~flotilla.scheduling.eviction`), then runs the main loop: the queue whose
cost would be the smallest fraction of its fair share with its next item (a heap keyed on
:func:`~flotilla.scheduling.queue_items.fair_share_ratio`) places that item. An evicted job is
rebound to its node; a new job goes through the per-cycle and per-queue limits and then to the
node database (best fit, else preemption to fair share, else urgency-based preemption); a gang
is placed all or nothing. After the loop, evicted jobs not rebound are preempted and nodes an
urgency-based placement oversubscribed are sorted out.

Performance: the node database tracks jobs only when a queue is evicted or urgency-based
preemption is possible; a run of unfit jobs of one shape in a queue is reported in one sweep
(:func:`~flotilla.scheduling.queue_items.sweep_unfit`); the main loop keeps what it uses in locals.
"""

from __future__ import annotations

from collections.abc import Mapping
from heapq import heapify, heappop, heappush, heappushpop
from typing import NamedTuple

from flotilla.resources import add_into

from .context import NewJob, SchedulingContext
from .eligibility import job_constraint
from .eviction import evict, evicted_runs
from .fair_share import adjusted_fair_shares, dominant_share, fair_shares, lazy_demands, total_capacity
from .model import Lease, Node, PoolStats, PriorityClass, QueuedJob, RunningJob
from .node_db import NodeDb
from .queue_items import Gang, QueueState, fair_share_ratio, job_order, sweep_unfit

_EPSILON = 1e-9  # float slack when comparing a queue's cost with its protected share


class _Rank(NamedTuple):
    """A priority class's urgency, and whether its jobs may be preempted."""

    priority: int
    preemptible: bool


_UNRANKED = _Rank(0, False)  # an unknown class: never preempted


class _PlacedMember(NamedTuple):
    """A gang member placed (and bound) inside a gang's transaction: its node, the evicted jobs
    whose room it took and whether it oversubscribed the node (urgency-based preemption)."""

    job: QueuedJob
    node: Node
    victims: list[str]
    urgent: bool


class _Victim(NamedTuple):
    """A job taken off an oversubscribed node, to be rebound if it still fits: the node, the job
    that oversubscribed it, the job, its priority class and its queue's state."""

    node_id: str
    culprit: str
    job: RunningJob | QueuedJob
    priority_class: PriorityClass | None
    queue: QueueState

    @property
    def priority(self) -> int:
        return self.priority_class.priority if self.priority_class is not None else 0


class Pool:
    """The scheduling of one pool: eviction, the fair-share loop and the oversubscription pass."""

    def __init__(
        self,
        context: SchedulingContext,
        name: str,
        nodes: list[Node],
        runs: list[RunningJob],
        items: dict[str, list],
    ) -> None:
        self.context = context
        self.name = name
        self.config = config = context.config
        self.resources = config.resources
        self.nodes = nodes
        self.runs = runs
        self.items = items
        self.unschedulable: dict[str, str] = {}
        self.total = total_capacity(nodes)
        self.leases: list[Lease] = []
        self.withdrawn: set[str] = set()
        self.new_jobs: dict[str, NewJob] = {}
        self.runs_by_id: dict[str, RunningJob] = {}
        self.gang_unfit: dict[tuple, str] = {}
        self.scheduled: dict[str, int] = dict(context.scheduled.get(name, {}))
        self.fraction_limits = {
            r: f * self.total.get(r, 0) for r, f in config.maximum_resource_fraction_to_schedule.items()
        }
        self.class_limits: dict[str, dict[str, float]] = {}
        for pc in config.priority_classes.values():
            if pc.maximum_resource_fraction_per_queue:
                self.class_limits[pc.name] = {
                    r: f * self.total.get(r, 0) for r, f in pc.maximum_resource_fraction_per_queue.items()
                }

    def _class_of(self, name: str) -> _Rank:
        pc = self.context.priority_class(name)
        return _Rank(pc.priority, pc.preemptible) if pc is not None else _UNRANKED

    def run_class(self, run: RunningJob) -> tuple[int, bool]:
        """A running job's priority and whether it may be preempted (never if its queue is
        unknown: Armada does not preempt what it cannot account for)."""
        priority, preemptible = self._class_of(run.priority_class)
        return priority, preemptible and run.queue in self.context.known

    # --- set-up ------------------------------------------------------------------------

    def run(self) -> dict[str, str]:
        context, config, resources, total = self.context, self.config, self.resources, self.total
        known = context.known
        alloc: dict[str, dict[str, int]] = {}
        by_class: dict[str, dict[str, dict[str, int]]] = {}
        for run in self.runs:
            queue = run.queue
            held = alloc.get(queue)
            if held is None:
                if queue not in known:
                    continue
                held = alloc[queue] = dict.fromkeys(resources, 0)
            for name, quantity in run.requests.items():  # add_into inlined: per running job
                held[name] = held.get(name, 0) + quantity
            if self.class_limits:
                pc = context.priority_class(run.priority_class)
                if pc is not None and pc.name in self.class_limits:
                    add_into(by_class.setdefault(run.queue, {}).setdefault(pc.name, {}), run.requests)
        active = set(alloc) | {name for name, items in self.items.items() if items}
        shares = fair_shares(context.queues, active)
        adjusted = adjusted_fair_shares(shares, lazy_demands(alloc, self.items, total, resources))

        # Only queues above their protected share can lose jobs; only their preemptible jobs on
        # schedulable nodes are looked at (nothing per job when nothing is preemptible).
        preemptible = {
            name for name in {run.priority_class for run in self.runs} if self._class_of(name).preemptible
        }
        evicted: list[RunningJob] = []
        protected = config.protected_fraction_of_fair_share
        over_at_start = {
            name
            for name, held in alloc.items()
            if dominant_share(held, total, resources)
            > protected * max(shares[name], adjusted[name]) + _EPSILON
        }
        if preemptible and over_at_start:
            evicted = evicted_runs(self.runs, self.nodes, over_at_start, preemptible)
        urgency = self._urgency_levels(preemptible)
        tracking = bool(evicted) or any(urgency.values())
        self.node_db = NodeDb(
            self.nodes, self.runs, resources, job_priority=self.run_class if tracking else None
        )
        self.fair = bool(evicted)
        self.levels_of = urgency

        states: dict[str, QueueState] = {}
        for name in sorted(active):
            share = shares[name]
            inv = [(r, 1.0 / (total[r] * share)) for r in resources if total.get(r, 0) > 0 and share > 0]
            states[name] = QueueState(
                name, [], alloc.get(name) or dict.fromkeys(resources, 0), inv, by_class=by_class.get(name, {})
            )
        if evicted:
            self.runs_by_id = {run.job_id: run for run in evicted}
            evict(self.node_db, evicted, states, context.priority_class)
        for name, items in self.items.items():
            if items:
                state = states[name]
                state.items = state.items + items if state.items else items
        for state in states.values():
            state.end = len(state.items)
            state.sweep_target = self.unschedulable
        self.states = states

        self._loop()
        if self.fair:
            for run in evicted:  # anything the loop did not get back (it gets them all)
                if self.node_db.is_evicted(run.job_id):
                    self._preempt(run, "preempted: not rescheduled")
        if tracking and self.node_db.oversubscribed:
            self._resolve_oversubscribed()

        db_stats = self.node_db.stats
        work = context.work
        work.node_searches += db_stats.node_searches
        work.shape_cache_hits += db_stats.shape_cache_hits
        work.nodes_examined += db_stats.nodes_examined
        work.jobs_evicted += len(evicted)
        context.leases.extend(lease for lease in self.leases if lease.job_id not in self.withdrawn)
        costs = {name: dominant_share(state.alloc, total, resources) for name, state in states.items()}
        context.pool_stats[self.name] = PoolStats(
            fair_shares=dict(shares), adjusted_fair_shares=adjusted, costs=costs
        )
        # A queue that got new leases and ended above its protected share while another queue
        # waits will be evicted next cycle and its room perhaps taken: let cycle._settle do it now.
        if self.leases and context.any_preemptible and any(s.waiting for s in states.values()):
            over = {
                name
                for name, cost in costs.items()
                if cost > protected * max(shares[name], adjusted[name]) + _EPSILON
            }
            if any(states[name].gained for name in over) and any(
                s.waiting and name not in over for name, s in states.items()
            ):
                context.unsettled = True
        return self.unschedulable

    def _urgency_levels(self, running_classes: set[str]) -> dict[int, tuple[int, ...]]:
        """For each priority of a queued job, the levels at which it may preempt by urgency:
        priorities of preemptible classes below its own, if any such job may be bound here."""
        pending: dict[str, PriorityClass] = {}
        for name, items in self.items.items():
            if items:
                pending.update(self.context.queue_classes.get(name, {}))
        if not pending:
            return {}
        lower = {self._class_of(name).priority for name in running_classes}
        lower.update(pc.priority for pc in pending.values() if pc.preemptible)
        preemptible = sorted({pc.priority for pc in self.config.priority_classes.values() if pc.preemptible})
        floor = min(lower, default=None)
        levels: dict[int, tuple[int, ...]] = {}
        for pc in pending.values():
            if floor is not None and floor < pc.priority:
                levels[pc.priority] = tuple(q for q in preemptible if q < pc.priority)
            else:
                levels[pc.priority] = ()
        return levels

    # --- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        states = self.states
        # Heap entries are (ratio with the next item, 0 if that item is an evicted job else 1,
        # queue): on an exact tie an evicted job is rebound before a new job may take its place.
        heap = [
            (fair_share_ratio(s, s.items[0].requests), 0 if s.evicted else 1, name)
            for name, s in states.items()
            if s.end
        ]
        heapify(heap)
        context = self.context
        node_db = self.node_db
        place, bind = node_db.place, node_db.bind
        tracking, fair, levels_of = node_db.tracking, self.fair, self.levels_of
        # Every queued job's class was resolved up front, and jobs of unknown classes rejected.
        known_classes = {name: pc for name, pc in context.class_cache.items() if pc is not None}
        resolve = known_classes.__getitem__
        leases, unschedulable = self.leases, self.unschedulable
        fraction_limits, class_limits = self.fraction_limits, self.class_limits
        pool = self.name
        considered = 0
        state: QueueState | None = None
        while True:
            if state is None:
                if not heap:
                    break
                ratio, _, name = heappop(heap)
                state = states[name]
                state.ratio = ratio
            item = state.items[state.pos]
            state.pos += 1
            changed = True
            kind = type(item)
            if kind is QueuedJob:
                if context.cap_left <= 0:
                    state.pos -= 1
                    heap = self._stop_new()
                    state = None
                    continue
                considered += 1
                pc = resolve(item.priority_class)
                requests = item.requests
                reason = self._limit_reason(state, pc) if fraction_limits or class_limits else ""
                if reason:
                    node = None
                else:
                    node, reason, victims = place(
                        item, pc.priority, fair=fair, levels=levels_of.get(pc.priority, ())
                    )
                if node is None:
                    unschedulable[item.job_id] = reason
                    changed = False
                    state.waiting = True
                    # Nothing changed, so the queue's next jobs of the same shape get the same
                    # answer and the queue stays first: sweep them without the heap.
                    swept = sweep_unfit(state, item, reason)
                    if swept:
                        considered += swept
                        node_db.stats.shape_cache_hits += swept
                else:
                    node_id = node.id
                    if tracking:
                        bind(
                            node_id,
                            requests,
                            job_id=item.job_id,
                            priority=pc.priority,
                            preemptible=pc.preemptible,
                        )
                        self.new_jobs[item.job_id] = NewJob(state, item, pc, None)
                        if victims:
                            self._preempt_to_fair_share(victims, item)
                    else:
                        bind(node_id, requests)
                    leases.append(Lease(item.job_id, item.queue, node.executor, node.name, pool))
                    state.gained = True
                    context.cap_left -= 1
                    alloc = state.alloc
                    for name, quantity in requests.items():  # add_into inlined: per lease
                        alloc[name] = alloc.get(name, 0) + quantity
                    if fraction_limits:
                        add_into(self.scheduled, requests)
                    if pc.name in class_limits:
                        add_into(state.by_class.setdefault(pc.name, {}), requests)
            elif kind is RunningJob:
                self._rebind(state, item)
            elif item.evicted:
                self._rebind_gang(state, item)
            else:
                if context.cap_left < len(item.members):
                    state.pos -= 1
                    heap = self._stop_new()
                    state = None
                    continue
                considered += len(item.members)
                changed = self._schedule_gang(state, item)
            if state.pos < state.end:
                if heap:
                    following = state.items[state.pos].requests
                    if changed or following != item.requests:
                        state.ratio = fair_share_ratio(state, following)
                    entry = (state.ratio, 0 if state.pos < state.evicted else 1, state.name)
                    top = heappushpop(heap, entry)
                    if top is not entry:
                        top_ratio, _, top_name = top
                        state = states[top_name]
                        state.ratio = top_ratio
            else:
                state = None
        context.work.jobs_considered += considered

    def _stop_new(self) -> list[tuple[float, int, str]]:
        """The lease cap is reached: only evicted jobs are still rebound."""
        heap = []
        for name, state in self.states.items():
            state.end = min(state.end, state.evicted)
            if state.pos < state.end:
                state.ratio = fair_share_ratio(state, state.items[state.pos].requests)
                heap.append((state.ratio, 0, name))
        heapify(heap)
        return heap

    # Limits are checked as Armada checks them (its CheckRoundConstraints and
    # CheckJobConstraints): against what is already scheduled or held, before the job. The job
    # that crosses a limit is let through; the ones after it are not.

    def _limit_reason(self, state: QueueState, pc: PriorityClass) -> str:
        for name, limit in self.fraction_limits.items():
            if self.scheduled.get(name, 0) > limit:
                return f"maximum resource fraction to schedule reached for {name}"
        return self._class_limit_reason(state, pc)

    def _class_limit_reason(self, state: QueueState, pc: PriorityClass) -> str:
        limits = self.class_limits.get(pc.name)
        if limits:
            held = state.by_class.get(pc.name, {})
            for name, limit in limits.items():
                if held.get(name, 0) > limit:
                    return f"queue limit for priority class {pc.name} reached"
        return ""

    def _preempt(self, run: RunningJob, reason: str, dropped: bool = False) -> None:
        if not dropped and self.node_db.node_of(run.job_id) is not None:
            self.node_db.drop(run.job_id)
        self.context.preempted.setdefault(run.job_id, reason)

    def _preempt_to_fair_share(self, victims: list[str], job: QueuedJob) -> None:
        """Preempt the evicted jobs whose resources ``job`` took (the node db dropped them)."""
        for victim in victims:
            self._preempt(
                self.runs_by_id[victim],
                f"preempted to fair share by {job.job_id} of queue {job.queue}",
                dropped=True,
            )

    def _take(
        self, state: QueueState, requests: Mapping[str, int], pc: PriorityClass | None, sign: int
    ) -> None:
        add_into(state.alloc, requests, sign)
        if pc is not None and pc.name in self.class_limits:
            add_into(state.by_class.setdefault(pc.name, {}), requests, sign)

    def _rebind(self, state: QueueState, run: RunningJob) -> None:
        if run.job_id in self.context.preempted:  # its resources went to a job of a fairer queue
            return
        pc = self.context.priority_class(run.priority_class)
        reason = self._class_limit_reason(state, pc) if pc is not None else ""
        if not reason and self.node_db.rebind(run.job_id, pc.priority if pc is not None else 0):
            self._take(state, run.requests, pc, +1)
            return
        node_id = self.node_db.node_of(run.job_id)
        culprit = self.node_db.culprit(node_id) if node_id in self.node_db.oversubscribed else ""
        if reason:
            self._preempt(run, f"preempted: {reason}")
        elif culprit:
            self._preempt(run, f"preempted by higher priority job {culprit}")
        else:
            self._preempt(run, "preempted: no longer fits on its node")

    def _rebind_gang(self, state: QueueState, gang: Gang) -> None:
        node_db = self.node_db
        pc = gang.priority_class
        reason = self._class_limit_reason(state, pc) if pc is not None else ""
        taken = [m.job_id for m in gang.members if m.job_id in self.context.preempted]
        if taken:
            reason = f"member {taken[0]} preempted"
        if not reason:
            node_db.begin()
            if all(node_db.rebind(m.job_id, pc.priority if pc is not None else 0) for m in gang.members):
                node_db.commit()
                self._take(state, gang.requests, pc, +1)
                return
            node_db.rollback()
            reason = "a member no longer fits on its node"
        for member in gang.members:
            self._preempt(member, f"preempted: gang {gang.gang_id}: {reason}")

    def _schedule_gang(self, state: QueueState, gang: Gang) -> bool:
        """Place a new gang all or nothing; True if it was leased.

        A gang shape (its members' shapes and uniformity label) that did not fit will not fit
        later in the cycle either (free resources only shrink), so the answer is cached.
        """
        pc = gang.priority_class
        reason = self._limit_reason(state, pc)
        if reason:
            self._reject_gang(gang, reason)
            return False
        node_db = self.node_db
        shape = (
            tuple((tuple(m.requests.items()), job_constraint(m)) for m in gang.members),
            gang.label,
            pc.priority,
        )
        reason = self.gang_unfit.get(shape, "")
        if reason:
            node_db.stats.shape_cache_hits += len(gang.members)
            self._reject_gang(gang, reason)
            return False
        if gang.label:
            values = node_db.label_values(gang.label)
            if not values:
                self._reject_gang(gang, f"gang does not fit: no node has label {gang.label}", shape)
                return False
            best: tuple[int, str] | None = None
            first_reason = ""
            for value in values:
                node_db.begin()
                placed, why = self._place_members(gang, (gang.label, value))
                if placed is not None and self._disruption(placed) == 0:
                    node_db.commit()
                    self._lease_gang(state, gang, placed)
                    return True
                node_db.rollback()
                if placed is not None:
                    candidate = (self._disruption(placed), value)
                    best = candidate if best is None or candidate < best else best
                elif not first_reason:
                    first_reason = why
            if best is not None:
                node_db.begin()
                placed, why = self._place_members(gang, (gang.label, best[1]))
                node_db.commit()
                if placed is not None:
                    self._lease_gang(state, gang, placed)
                    return True
            self._reject_gang(gang, f"gang does not fit on any {gang.label}: {first_reason}", shape)
            return False
        node_db.begin()
        placed, why = self._place_members(gang, None)
        if placed is None:
            node_db.rollback()
            self._reject_gang(gang, f"gang does not fit: {why}", shape)
            return False
        node_db.commit()
        self._lease_gang(state, gang, placed)
        return True

    @staticmethod
    def _disruption(placed: list[_PlacedMember]) -> int:
        return sum(len(p.victims) + p.urgent for p in placed)

    def _place_members(
        self, gang: Gang, restrict: tuple[str, str] | None
    ) -> tuple[list[_PlacedMember] | None, str]:
        """Place and bind every member inside the caller's transaction; None and the first
        member's reason if one does not fit."""
        node_db, pc = self.node_db, gang.priority_class
        levels = self.levels_of.get(pc.priority, ())
        placed: list[_PlacedMember] = []
        for member in gang.members:
            node, reason, victims = node_db.place(
                member, pc.priority, restrict=restrict, fair=self.fair, levels=levels
            )
            if node is None:
                return None, reason
            before = len(node_db.oversubscribed)
            node_db.bind(
                node.id,
                member.requests,
                job_id=member.job_id,
                priority=pc.priority,
                preemptible=pc.preemptible,
            )
            placed.append(_PlacedMember(member, node, victims, len(node_db.oversubscribed) > before))
        return placed, ""

    def _lease_gang(self, state: QueueState, gang: Gang, placed: list[_PlacedMember]) -> None:
        pc = gang.priority_class
        for member, node, victims, _ in placed:
            self.leases.append(Lease(member.job_id, member.queue, node.executor, node.name, self.name))
            self.new_jobs[member.job_id] = NewJob(state, member, pc, gang)
            if victims:
                self._preempt_to_fair_share(victims, member)
        self.context.cap_left -= len(placed)
        state.gained = True
        self._take(state, gang.requests, pc, +1)
        if self.fraction_limits:
            add_into(self.scheduled, gang.requests)

    def _reject_gang(self, gang: Gang, reason: str, shape: tuple | None = None) -> None:
        self.states[gang.queue].waiting = True
        if shape is not None:
            self.gang_unfit[shape] = reason
        for member in gang.members:
            self.unschedulable[member.job_id] = reason

    # --- oversubscribed nodes ----------------------------------------------------------

    def _resolve_oversubscribed(self) -> None:
        """Evict the lower jobs of oversubscribed nodes and rebind them, higher priority
        classes first, then fairest queue first; preempt (or withdraw) what does not fit."""
        node_db, context = self.node_db, self.context
        running = {run.job_id: run for run in self.runs}
        victims: list[_Victim] = []
        for node_id in sorted(node_db.oversubscribed):
            dropped: list[tuple[RunningJob | QueuedJob, PriorityClass | None, QueueState]] = []
            for job_id in node_db.oversubscribed_victims(node_id):
                new = self.new_jobs.get(job_id)
                job: RunningJob | QueuedJob
                pc: PriorityClass | None
                if new is not None:
                    state, job, pc = new.queue, new.job, new.priority_class
                else:
                    job = running[job_id]
                    pc = context.priority_class(job.priority_class)
                    found = self.states.get(job.queue)
                    if found is None:
                        continue
                    state = found
                requests = node_db.drop(job_id)
                self._take(state, requests, pc, -1)
                dropped.append((job, pc, state))
            culprit = node_db.culprit(node_id)  # the first oversubscribing job still there
            victims += [_Victim(node_id, culprit, job, pc, state) for job, pc, state in dropped]
        victims.sort(key=lambda v: (v.queue.name, job_order(v.job, v.priority)))
        by_queue: dict[str, list[_Victim]] = {}
        for victim in victims:
            by_queue.setdefault(victim.queue.name, []).append(victim)
        positions = dict.fromkeys(by_queue, 0)

        def key(name: str) -> tuple[int, float, str]:
            victim = by_queue[name][positions[name]]
            return (-victim.priority, fair_share_ratio(victim.queue, victim.job.requests), name)

        heap = [key(name) for name in by_queue]
        heapify(heap)
        displaced: list[tuple[QueuedJob, str]] = []
        while heap:
            *_, name = heappop(heap)
            node_id, culprit, job, pc, state = by_queue[name][positions[name]]
            positions[name] += 1
            if node_db.fits_on(node_id, job.requests):
                node_db.bind(
                    node_id,
                    job.requests,
                    job_id=job.job_id,
                    priority=pc.priority if pc is not None else 0,
                    preemptible=pc.preemptible if pc is not None else False,
                )
                self._take(state, job.requests, pc, +1)
            elif isinstance(job, RunningJob):
                context.preempted.setdefault(job.job_id, f"preempted by higher priority job {culprit}")
            else:
                displaced.append((job, culprit))
            if positions[name] < len(by_queue[name]):
                heappush(heap, key(name))
        for job, culprit in displaced:
            gang = self.new_jobs[job.job_id].gang
            members: list[QueuedJob] = gang.members if gang is not None else [job]
            for member in members:
                if member.job_id in self.withdrawn:
                    continue
                self.withdrawn.add(member.job_id)
                new = self.new_jobs[member.job_id]
                new.queue.waiting = True  # its queue waits again: settle
                context.cap_left += 1
                self.unschedulable[member.job_id] = f"displaced by higher priority job {culprit}"
                if member is not job and node_db.node_of(member.job_id) is not None:
                    self._take(new.queue, node_db.drop(member.job_id), new.priority_class, -1)
