import { useQuery } from "@tanstack/react-query";
import { getRunDebugMessage, getRunError, type Run } from "../api";
import { formatTime } from "../format";
import { type Field, FieldList } from "./FieldList";

/** One run: where and when it ran, how it ended, and its error and debug text. */
export function RunDetails({ run }: { run: Run }) {
  const ended = run.finished !== null;
  const error = useQuery({ queryKey: ["runError", run.runId], queryFn: () => getRunError(run.runId), enabled: ended });
  const debug = useQuery({ queryKey: ["runDebug", run.runId], queryFn: () => getRunDebugMessage(run.runId), enabled: ended });
  const fields: Field[] = [
    ["Run", run.runId],
    ["State", run.jobRunState],
    ["Cluster", run.cluster],
    ["Node", run.node],
    ["Pool", run.pool],
    ["Leased", formatTime(run.leased)],
    ["Pending", formatTime(run.pending)],
    ["Started", formatTime(run.started)],
    ["Finished", formatTime(run.finished)],
    ["Exit code", run.exitCode],
    ["Failure", [run.failureCategory, run.failureSubcategory].filter(Boolean).join(" / ")],
  ];
  return (
    <section className="run" data-run-id={run.runId}>
      <FieldList fields={fields} />
      {error.data && (
        <>
          <h4>Error</h4>
          <pre className="run-error">{error.data}</pre>
        </>
      )}
      {debug.data && (
        <>
          <h4>Debug</h4>
          <pre>{debug.data}</pre>
        </>
      )}
    </section>
  );
}
