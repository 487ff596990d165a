// The Lookout HTTP API, typed: Armada's Lookout v2 endpoints (armada-docs/lookout-v2-swagger.yaml)
// and Flotilla's own (actions by ids or by filter, a job's events, a run's logs, why a job waits).

export const JOB_STATES = [
  "QUEUED",
  "LEASED",
  "PENDING",
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "CANCELLED",
  "PREEMPTED",
  "REJECTED",
] as const;
export type JobState = (typeof JOB_STATES)[number];

export type Match =
  | "exact"
  | "anyOf"
  | "startsWith"
  | "contains"
  | "greaterThan"
  | "lessThan"
  | "greaterThanOrEqualTo"
  | "lessThanOrEqualTo"
  | "exists";

export interface Filter {
  field: string;
  match: Match;
  value: string | number | (string | number)[] | null;
  isAnnotation?: boolean;
}

export interface Order {
  field: string;
  direction: "ASC" | "DESC";
}

export interface Run {
  runId: string;
  cluster: string;
  node: string | null;
  pool: string | null;
  leased: string | null;
  pending: string | null;
  started: string | null;
  finished: string | null;
  jobRunState: string;
  exitCode: number | null;
  failureCategory?: string;
  failureSubcategory?: string;
}

export interface Job {
  jobId: string;
  queue: string;
  owner: string;
  namespace: string | null;
  jobSet: string;
  cpu: number;
  memory: number;
  ephemeralStorage: number;
  gpu: number;
  priority: number;
  priorityClass: string | null;
  submitted: string;
  cancelled: string | null;
  state: JobState;
  lastTransitionTime: string;
  lastActiveRunId: string | null;
  annotations: Record<string, string>;
  runs: Run[];
  cancelReason: string | null;
  cancelUser: string | null;
  node: string | null;
  cluster: string;
  pool: string | null;
  exitCode: number | null;
  runtimeSeconds: number;
}

export interface Group {
  name: string;
  count: number;
  aggregates: { state?: Partial<Record<JobState, number>> };
}

export interface SchedulingReport {
  jobId: string;
  state: JobState;
  reason: string | null;
  reported: string | null;
}

export interface JobEvent {
  type: string;
  created: string;
  runId: string | null;
  message: string | null;
}

/** Which jobs an action is for: listed ids, or every job that matches the filters. */
export type Selection = { jobIds: string[] } | { filters: Filter[]; activeJobSets?: boolean };

async function post<T>(path: string, body: unknown): Promise<T> {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const reply = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) {
    throw new Error(reply.error ?? `${response.status} ${response.statusText}`);
  }
  return reply as T;
}

export interface JobsRequest {
  filters: Filter[];
  order: Order;
  activeJobSets?: boolean;
  skip: number;
  take: number;
}

export const getJobs = (request: JobsRequest) =>
  post<{ jobs: Job[]; continuation: string | null }>("/api/v1/jobs", request);

export interface GroupsRequest {
  filters: Filter[];
  groupedField: { field: string; isAnnotation?: boolean };
  activeJobSets?: boolean;
  skip: number;
  take: number;
}

export const getGroups = (request: GroupsRequest) =>
  post<{ groups: Group[] }>("/api/v1/jobGroups", {
    ...request,
    order: { field: "count", direction: "DESC" },
    aggregates: ["state"],
  });

export const getJobSpec = (jobId: string) =>
  post<{ job: Record<string, unknown> }>("/api/v1/jobSpec", { jobId }).then((r) => r.job);

export const getRunError = (runId: string) =>
  post<{ errorString: string }>("/api/v1/jobRunError", { runId }).then((r) => r.errorString);

export const getRunDebugMessage = (runId: string) =>
  post<{ errorString: string }>("/api/v1/jobRunDebugMessage", { runId }).then((r) => r.errorString);

export const getSchedulingReport = (jobId: string) =>
  post<SchedulingReport>("/api/v1/jobSchedulingReport", { jobId });

export const getJobEvents = (jobId: string) =>
  post<{ events: JobEvent[] }>("/api/v1/jobEvents", { jobId }).then((r) => r.events);

export const getRunLogs = (runId: string, tailLines: number) =>
  post<{ lines: string[] }>("/api/v1/jobRunLogs", { runId, tailLines }).then((r) => r.lines);

type Affected = Promise<{ jobsAffected: number }>;

export const cancelJobs = (selection: Selection, reason: string): Affected =>
  post("/api/v1/jobs/cancel", { ...selection, ...(reason ? { reason } : {}) });

export const reprioritizeJobs = (selection: Selection, newPriority: number): Affected =>
  post("/api/v1/jobs/reprioritize", { ...selection, newPriority });

export const preemptJobs = (selection: Selection, reason: string): Affected =>
  post("/api/v1/jobs/preempt", { ...selection, ...(reason ? { reason } : {}) });
