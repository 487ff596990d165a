import type { RowSelectionState } from "@tanstack/react-table";
import { useState } from "react";
import type { Selection } from "../api";
import { useJobTree } from "../jobTree";
import { type Location, navigate } from "../location";
import { groupFilters, type JobsView, paramsFromView, viewFromParams } from "../view";
import { type Action, ActionDialog } from "./ActionDialog";
import { ColumnPicker } from "./ColumnPicker";
import { GroupByPicker } from "./GroupByPicker";
import { JobSidebar } from "./JobSidebar";
import { JobsTable } from "./JobsTable";
import { Pager } from "./Pager";
import { RefreshControls } from "./RefreshControls";

const JOB_PATH = /^\/jobs\/([^/]+)$/;

/** Selected rows as action targets: the listed jobs by id, each selected group by its filters. */
function targetsOf(selection: RowSelectionState, view: JobsView): { targets: Selection[]; what: string } {
  const keys = Object.keys(selection).filter((k) => selection[k]);
  const jobIds = keys.filter((k) => k.startsWith("job:")).map((k) => k.slice(4));
  const groups = keys.filter((k) => k.startsWith("group:")).map((k) => JSON.parse(k.slice(6)) as string[]);
  const targets: Selection[] = groups.map((path) => ({ filters: groupFilters(view, path), activeJobSets: view.activeJobSets }));
  if (jobIds.length) targets.unshift({ jobIds });
  const what = [jobIds.length && `${jobIds.length} job${jobIds.length > 1 ? "s" : ""}`, groups.length && `every job of ${groups.length} group${groups.length > 1 ? "s" : ""}`]
    .filter(Boolean)
    .join(" and ");
  return { targets, what };
}

export function JobsPage({ location }: { location: Location }) {
  const view = viewFromParams(location.params);
  const jobPath = JOB_PATH.exec(location.path);
  const openJobId = jobPath ? decodeURIComponent(jobPath[1]) : null;
  const [selection, setSelection] = useState<RowSelectionState>({});
  const [action, setAction] = useState<Action | null>(null);
  const tree = useJobTree(view);

  const change = (update: Partial<JobsView>) => {
    const next = { ...view, ...update };
    // A change of what is listed makes the old selection meaningless.
    if (update.filters || update.groupBy || update.activeJobSets !== undefined) setSelection({});
    navigate(location.path, paramsFromView(next));
  };
  const openJob = (jobId: string) => navigate(`/jobs/${encodeURIComponent(jobId)}`, location.params);
  const { targets, what } = targetsOf(selection, view);

  return (
    <div className={openJobId ? "jobs-page with-sidebar" : "jobs-page"}>
      <div className="main">
        <div className="toolbar">
          <GroupByPicker groupBy={view.groupBy} onChange={(groupBy) => change({ groupBy, expanded: [], page: 0 })} />
          <ColumnPicker columns={view.columns} onChange={(columns) => change({ columns })} />
          <label>
            <input type="checkbox" checked={view.activeJobSets} onChange={(e) => change({ activeJobSets: e.target.checked, page: 0 })} /> Active job
            sets only
          </label>
          <button type="button" disabled={!view.filters.length} onClick={() => change({ filters: [], page: 0, expanded: [] })}>
            Clear filters
          </button>
          <RefreshControls seconds={view.refreshSeconds} onChange={(refreshSeconds) => change({ refreshSeconds })} />
          <span className="actions">
            {targets.length > 0 && <span className="selected">{what} selected</span>}
            <button type="button" disabled={!targets.length} onClick={() => setAction("cancel")}>
              Cancel
            </button>
            <button type="button" disabled={!targets.length} onClick={() => setAction("reprioritize")}>
              Reprioritise
            </button>
            <button type="button" disabled={!targets.length} onClick={() => setAction("preempt")}>
              Preempt
            </button>
          </span>
        </div>
        {tree.error && <p className="error">{tree.error.message}</p>}
        <JobsTable
          view={view}
          rows={tree.rows}
          selection={selection}
          onSelectionChange={setSelection}
          onViewChange={change}
          onOpenJob={openJob}
          openJobId={openJobId}
        />
        <Pager
          page={view.page}
          pageSize={view.pageSize}
          rowsShown={tree.rows.length}
          hasNextPage={tree.hasNextPage}
          onChange={(page, pageSize) => change({ page, pageSize, expanded: [] })}
        />
      </div>
      {openJobId && (
        <JobSidebar key={openJobId} jobId={openJobId} refreshSeconds={view.refreshSeconds} onClose={() => navigate("/", location.params)} />
      )}
      {action && (
        <ActionDialog
          action={action}
          targets={targets}
          what={what}
          onClose={() => {
            setAction(null);
            setSelection({});
          }}
        />
      )}
    </div>
  );
}
