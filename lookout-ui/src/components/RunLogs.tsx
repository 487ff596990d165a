import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { getRunLogs, type Job } from "../api";

const TAIL_LINES = 1000;

/** The last lines a run's container wrote, from the executor it ran on. */
export function RunLogs({ job }: { job: Job }) {
  const [runId, setRunId] = useState(job.lastActiveRunId ?? job.runs.at(-1)?.runId ?? "");
  const logs = useQuery({ queryKey: ["runLogs", runId], queryFn: () => getRunLogs(runId, TAIL_LINES), enabled: runId !== "" });
  if (!job.runs.length) return <p>The job has not run.</p>;
  return (
    <div className="logs">
      <label>
        Run{" "}
        <select aria-label="Run" value={runId} onChange={(e) => setRunId(e.target.value)}>
          {job.runs.map((run) => (
            <option key={run.runId} value={run.runId}>
              {run.runId} on {run.cluster}
            </option>
          ))}
        </select>
      </label>{" "}
      <button type="button" onClick={() => logs.refetch()}>
        Reload
      </button>
      {logs.error && <p className="error">{logs.error.message}</p>}
      {logs.data && <pre className="log-lines">{logs.data.join("\n") || "(no output)"}</pre>}
    </div>
  );
}
