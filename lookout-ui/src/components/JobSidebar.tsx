import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { getJobs } from "../api";
import { formatTime } from "../format";
import { type Action, ActionDialog } from "./ActionDialog";
import { JobDetails } from "./JobDetails";
import { JobEvents } from "./JobEvents";
import { JobYaml } from "./JobYaml";
import { RunDetails } from "./RunDetails";
import { RunLogs } from "./RunLogs";
import { SchedulingReason } from "./SchedulingReason";
import { StateChip } from "./StateChip";

const TABS = ["Details", "Runs", "YAML", "Events", "Scheduling", "Logs"] as const;
type Tab = (typeof TABS)[number];

interface Props {
  jobId: string;
  refreshSeconds: number;
  onClose: () => void;
}

/** One job (the page at /jobs/<id>): its details, runs, spec, events, why it waits, its logs. */
export function JobSidebar({ jobId, refreshSeconds, onClose }: Props) {
  const [tab, setTab] = useState<Tab>("Details");
  const [action, setAction] = useState<Action | null>(null);
  const found = useQuery({
    queryKey: ["job", jobId],
    queryFn: () =>
      getJobs({ filters: [{ field: "jobId", match: "exact", value: jobId }], order: { field: "jobId", direction: "DESC" }, skip: 0, take: 1 }),
    refetchInterval: refreshSeconds ? refreshSeconds * 1000 : false,
  });
  const job = found.data?.jobs[0];
  return (
    <aside className="sidebar" aria-label="Job">
      <header>
        <h2 className="job-id">{jobId}</h2>
        <button type="button" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </header>
      {found.error && <p className="error">{found.error.message}</p>}
      {found.data && !job && <p className="error">No job {jobId} in Lookout.</p>}
      {job && (
        <>
          <p>
            <StateChip state={job.state} /> since {formatTime(job.lastTransitionTime)}
          </p>
          <div className="actions">
            {(["cancel", "reprioritize", "preempt"] as const).map((a) => (
              <button key={a} type="button" onClick={() => setAction(a)}>
                {a === "cancel" ? "Cancel" : a === "preempt" ? "Preempt" : "Reprioritise"}
              </button>
            ))}
          </div>
          <nav className="tabs" role="tablist">
            {TABS.map((t) => (
              <button key={t} type="button" role="tab" aria-selected={t === tab} onClick={() => setTab(t)}>
                {t}
              </button>
            ))}
          </nav>
          <div className="tab-body" role="tabpanel">
            {tab === "Details" && <JobDetails job={job} />}
            {tab === "Runs" && (job.runs.length ? job.runs.map((run) => <RunDetails key={run.runId} run={run} />) : <p>No runs yet.</p>)}
            {tab === "YAML" && <JobYaml jobId={jobId} />}
            {tab === "Events" && <JobEvents jobId={jobId} />}
            {tab === "Scheduling" && <SchedulingReason jobId={jobId} />}
            {tab === "Logs" && <RunLogs job={job} />}
          </div>
          {action && <ActionDialog action={action} targets={[{ jobIds: [jobId] }]} what={`job ${jobId}`} onClose={() => setAction(null)} />}
        </>
      )}
    </aside>
  );
}
