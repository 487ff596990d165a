import { useQuery } from "@tanstack/react-query";
import { getSchedulingReport } from "../api";
import { formatTime } from "../format";

/** Why a queued job waits, in the scheduler's words from its latest cycle. */
export function SchedulingReason({ jobId }: { jobId: string }) {
  const report = useQuery({ queryKey: ["schedulingReport", jobId], queryFn: () => getSchedulingReport(jobId) });
  if (report.error) return <p className="error">{report.error.message}</p>;
  if (!report.data) return <p>Loading…</p>;
  if (report.data.state !== "QUEUED") return <p>The job is {report.data.state.toLowerCase()}, not waiting.</p>;
  if (!report.data.reason) return <p>The scheduler has not reported on this job since it was queued.</p>;
  return (
    <p className="waiting-reason">
      Waiting: <b>{report.data.reason}</b> (reported {formatTime(report.data.reported)})
    </p>
  );
}
