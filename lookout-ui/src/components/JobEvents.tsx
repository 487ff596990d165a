import { useQuery } from "@tanstack/react-query";
import { getJobEvents } from "../api";
import { formatTime } from "../format";

/** Every event of the job in the log, oldest first. */
export function JobEvents({ jobId }: { jobId: string }) {
  const events = useQuery({ queryKey: ["jobEvents", jobId], queryFn: () => getJobEvents(jobId) });
  if (events.error) return <p className="error">{events.error.message}</p>;
  if (!events.data) return <p>Loading…</p>;
  return (
    <ol className="timeline">
      {events.data.map((event, i) => (
        <li key={`${event.created}-${i}`} data-event={event.type}>
          <time>{formatTime(event.created)}</time> <b>{event.type}</b>
          {event.runId && <span className="run-id"> run {event.runId}</span>}
          {event.message && <div className="message">{event.message}</div>}
        </li>
      ))}
    </ol>
  );
}
