import type { Job } from "../api";
import { formatBytes, formatCpu, formatTime } from "../format";
import { type Field, FieldList } from "./FieldList";

export function JobDetails({ job }: { job: Job }) {
  const fields: Field[] = [
    ["Queue", job.queue],
    ["Job set", job.jobSet],
    ["Owner", job.owner],
    ["Namespace", job.namespace],
    ["Priority", job.priority],
    ["Priority class", job.priorityClass],
    ["Submitted", formatTime(job.submitted)],
    ["Last transition", formatTime(job.lastTransitionTime)],
    ["Resources", `cpu ${formatCpu(job.cpu)}, memory ${formatBytes(job.memory)}, gpu ${job.gpu}, ephemeral storage ${formatBytes(job.ephemeralStorage)}`],
    ["Cancelled", job.cancelled ? `${formatTime(job.cancelled)} by ${job.cancelUser ?? "?"}: ${job.cancelReason ?? ""}` : null],
    ...Object.entries(job.annotations).map(([key, value]): Field => [key, value]),
  ];
  return <FieldList fields={fields} />;
}
