// The jobs table's columns: what each shows, which API field it filters and sorts on, and with
// which match types (those of filters.py on the server).
import type { ReactNode } from "react";
import type { Job, Match } from "./api";
import { StateChip } from "./components/StateChip";
import { formatBytes, formatCpu, formatDuration, formatTime, secondsSince } from "./format";

export type FilterKind = "text" | "number" | "cpu" | "bytes" | "time" | "state" | "annotation";

export const MATCHES: Record<FilterKind, Match[]> = {
  text: ["exact", "startsWith", "contains", "anyOf"],
  number: ["exact", "greaterThan", "lessThan", "greaterThanOrEqualTo", "lessThanOrEqualTo", "anyOf"],
  cpu: ["exact", "greaterThan", "lessThan", "greaterThanOrEqualTo", "lessThanOrEqualTo"],
  bytes: ["exact", "greaterThan", "lessThan", "greaterThanOrEqualTo", "lessThanOrEqualTo"],
  time: ["greaterThan", "lessThan", "greaterThanOrEqualTo", "lessThanOrEqualTo", "exact"],
  state: ["anyOf", "exact"],
  annotation: ["exact", "startsWith", "contains", "exists"],
};

export const MATCH_LABELS: Record<Match, string> = {
  exact: "=",
  anyOf: "any of",
  startsWith: "starts with",
  contains: "contains",
  greaterThan: ">",
  lessThan: "<",
  greaterThanOrEqualTo: "≥",
  lessThanOrEqualTo: "≤",
  exists: "has key",
};

export interface Column {
  id: string;
  header: string;
  cell: (job: Job, now: number) => ReactNode;
  /** The API field its filter applies to, and how its text is read. */
  filter?: { field: string; kind: FilterKind };
  sortField?: string;
  groupable?: boolean;
}

const latestRun = (job: Job) => job.runs.find((r) => r.runId === job.lastActiveRunId);

export const COLUMNS: Column[] = [
  { id: "queue", header: "Queue", cell: (j) => j.queue, filter: { field: "queue", kind: "text" }, sortField: "queue", groupable: true },
  { id: "jobSet", header: "Job set", cell: (j) => j.jobSet, filter: { field: "jobSet", kind: "text" }, sortField: "jobSet", groupable: true },
  { id: "jobId", header: "Job id", cell: (j) => j.jobId, filter: { field: "jobId", kind: "text" }, sortField: "jobId" },
  { id: "state", header: "State", cell: (j) => <StateChip state={j.state} />, filter: { field: "state", kind: "state" }, sortField: "state", groupable: true },
  { id: "timeInState", header: "Time in state", cell: (j, now) => formatDuration(secondsSince(j.lastTransitionTime, now)), filter: { field: "lastTransitionTime", kind: "time" }, sortField: "lastTransitionTime" },
  { id: "submitted", header: "Submitted", cell: (j) => formatTime(j.submitted), filter: { field: "submitted", kind: "time" }, sortField: "submitted" },
  { id: "namespace", header: "Namespace", cell: (j) => j.namespace, filter: { field: "namespace", kind: "text" }, sortField: "namespace", groupable: true },
  { id: "priority", header: "Priority", cell: (j) => j.priority, filter: { field: "priority", kind: "number" }, sortField: "priority" },
  { id: "priorityClass", header: "Priority class", cell: (j) => j.priorityClass, filter: { field: "priorityClass", kind: "text" }, groupable: true },
  { id: "cpu", header: "CPU", cell: (j) => formatCpu(j.cpu), filter: { field: "cpu", kind: "cpu" } },
  { id: "memory", header: "Memory", cell: (j) => formatBytes(j.memory), filter: { field: "memory", kind: "bytes" } },
  { id: "gpu", header: "GPU", cell: (j) => j.gpu, filter: { field: "gpu", kind: "number" } },
  { id: "node", header: "Node", cell: (j) => j.node, filter: { field: "node", kind: "text" }, groupable: true },
  { id: "cluster", header: "Cluster", cell: (j) => j.cluster, filter: { field: "cluster", kind: "text" }, groupable: true },
  { id: "pool", header: "Pool", cell: (j) => j.pool, filter: { field: "pool", kind: "text" }, groupable: true },
  { id: "exitCode", header: "Exit code", cell: (j) => j.exitCode, filter: { field: "exitCode", kind: "number" } },
  { id: "runtime", header: "Runtime", cell: (j) => (j.runs.length ? formatDuration(j.runtimeSeconds) : "") },
  { id: "failureCategory", header: "Failure category", cell: (j) => latestRun(j)?.failureCategory, filter: { field: "failureCategory", kind: "text" } },
  {
    id: "annotations",
    header: "Annotations",
    cell: (j) => Object.entries(j.annotations).map(([k, v]) => `${k}=${v}`).join(", "),
    filter: { field: "annotations", kind: "annotation" },
  },
];

export const COLUMN_BY_ID = new Map(COLUMNS.map((c) => [c.id, c]));
export const DEFAULT_COLUMNS = ["queue", "jobSet", "jobId", "state", "timeInState", "submitted"];
export const GROUPABLE = COLUMNS.filter((c) => c.groupable);

/** How a grouping (a column id, or "annotation:<key>") is named on screen. */
export function groupingLabel(grouping: string): string {
  return COLUMN_BY_ID.get(grouping)?.header ?? grouping.replace(/^annotation:/, "annotation ");
}
