import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { getGroups, JOB_STATES, type Selection } from "../api";
import { DEFAULT_COLUMNS } from "../columns";
import { type Location, navigate } from "../location";
import { paramsFromView, viewFromParams } from "../view";
import { type Action, ActionDialog } from "./ActionDialog";
import { Link } from "./Link";

const MANY = 1000;

/** Per queue, each job set's jobs by state, with cancel and reprioritise for whole job sets. */
export function JobSetsPage({ location }: { location: Location }) {
  const queue = location.params.get("queue") ?? "";
  const activeOnly = location.params.get("active") === "1";
  const [selected, setSelected] = useState<string[]>([]);
  const [action, setAction] = useState<Action | null>(null);
  const queues = useQuery({
    queryKey: ["queues"],
    queryFn: () => getGroups({ filters: [], groupedField: { field: "queue" }, skip: 0, take: MANY }),
  });
  const jobSets = useQuery({
    queryKey: ["jobSets", queue, activeOnly],
    queryFn: () =>
      getGroups({
        filters: [{ field: "queue", match: "exact", value: queue }],
        groupedField: { field: "jobSet" },
        activeJobSets: activeOnly,
        skip: 0,
        take: MANY,
      }),
    enabled: queue !== "",
  });
  const go = (nextQueue: string, nextActive: boolean) => {
    setSelected([]);
    const params = new URLSearchParams();
    if (nextQueue) params.set("queue", nextQueue);
    if (nextActive) params.set("active", "1");
    navigate("/jobsets", params);
  };
  const jobsOf = (jobSet: string, state?: string) =>
    paramsFromView({
      ...viewFromParams(new URLSearchParams()),
      columns: DEFAULT_COLUMNS,
      filters: [
        { field: "queue", match: "exact", value: queue },
        { field: "jobSet", match: "exact", value: jobSet },
        ...(state ? [{ field: "state", match: "exact" as const, value: state }] : []),
      ],
    });
  const targets: Selection[] = selected.map((jobSet) => ({
    filters: [
      { field: "queue", match: "exact", value: queue },
      { field: "jobSet", match: "exact", value: jobSet },
    ],
  }));
  const rows = jobSets.data?.groups ?? [];
  const toggle = (name: string) => setSelected(selected.includes(name) ? selected.filter((s) => s !== name) : [...selected, name]);

  return (
    <div className="job-sets-page">
      <div className="toolbar">
        <label>
          Queue{" "}
          <select aria-label="Queue" value={queue} onChange={(e) => go(e.target.value, activeOnly)}>
            <option value="">(choose a queue)</option>
            {queues.data?.groups.map((g) => (
              <option key={g.name} value={g.name}>
                {g.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <input type="checkbox" checked={activeOnly} onChange={(e) => go(queue, e.target.checked)} /> Active job sets only
        </label>
        <span className="actions">
          <button type="button" disabled={!selected.length} onClick={() => setAction("cancel")}>
            Cancel
          </button>
          <button type="button" disabled={!selected.length} onClick={() => setAction("reprioritize")}>
            Reprioritise
          </button>
        </span>
      </div>
      {jobSets.error && <p className="error">{jobSets.error.message}</p>}
      {queue && (
        <table className="job-sets">
          <thead>
            <tr>
              <th />
              <th>Job set</th>
              <th>Jobs</th>
              {JOB_STATES.map((s) => (
                <th key={s}>{s.toLowerCase()}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((g) => (
              <tr key={g.name} data-job-set={g.name}>
                <td>
                  <input type="checkbox" aria-label={`Select ${g.name}`} checked={selected.includes(g.name)} onChange={() => toggle(g.name)} />
                </td>
                <td>
                  <Link path="/" params={jobsOf(g.name)}>
                    {g.name}
                  </Link>
                </td>
                <td>{g.count}</td>
                {JOB_STATES.map((s) => (
                  <td key={s} data-state={s}>
                    {g.aggregates.state?.[s] ? (
                      <Link path="/" params={jobsOf(g.name, s)}>
                        {g.aggregates.state[s]}
                      </Link>
                    ) : null}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {action && (
        <ActionDialog
          action={action}
          targets={targets}
          what={`${selected.length} job set${selected.length > 1 ? "s" : ""} of ${queue}`}
          onClose={() => {
            setAction(null);
            setSelected([]);
          }}
        />
      )}
    </div>
  );
}
