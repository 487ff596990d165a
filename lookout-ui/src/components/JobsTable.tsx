import {
  type ColumnDef,
  type ExpandedState,
  flexRender,
  getCoreRowModel,
  getExpandedRowModel,
  type Row,
  type RowSelectionState,
  useReactTable,
} from "@tanstack/react-table";
import { useEffect, useState } from "react";
import type { Filter } from "../api";
import { COLUMN_BY_ID, type Column, groupingLabel } from "../columns";
import { groupRowId, type TableRow } from "../jobTree";
import { groupFilters, type JobsView, paramsFromView } from "../view";
import { FilterCell } from "./FilterCell";
import { Link } from "./Link";
import { StateCounts } from "./StateCounts";

interface Props {
  view: JobsView;
  rows: TableRow[];
  selection: RowSelectionState;
  onSelectionChange: (selection: RowSelectionState) => void;
  onViewChange: (change: Partial<JobsView>) => void;
  onOpenJob: (jobId: string) => void;
  openJobId: string | null;
}

function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  return now;
}

function sameFilterTarget(a: Filter, column: Column): boolean {
  if (column.filter?.kind === "annotation") return a.isAnnotation === true;
  return !a.isAnnotation && a.field === column.filter?.field;
}

export function JobsTable({ view, rows, selection, onSelectionChange, onViewChange, onOpenJob, openJobId }: Props) {
  const now = useNow();
  const shown = view.columns.map((id) => COLUMN_BY_ID.get(id)).filter((c): c is Column => c !== undefined);
  const columns: ColumnDef<TableRow>[] = [
    {
      id: "select",
      // The top-level rows only: a selected group already stands for every job inside it.
      header: () => {
        const all = rows.length > 0 && rows.every((r) => selection[r.id]);
        return (
          <input
            type="checkbox"
            aria-label="Select all rows"
            checked={all}
            onChange={() => onSelectionChange(all ? {} : Object.fromEntries(rows.map((r) => [r.id, true])))}
          />
        );
      },
      cell: ({ row }) => (
        <input
          type="checkbox"
          aria-label={`Select ${row.id}`}
          checked={row.getIsSelected()}
          onChange={row.getToggleSelectedHandler()}
          onClick={(e) => e.stopPropagation()}
        />
      ),
    },
    ...shown.map(
      (column): ColumnDef<TableRow> => ({
        id: column.id,
        header: column.header,
        cell: ({ row }) => (row.original.kind === "job" ? column.cell(row.original.job, now) : null),
      }),
    ),
  ];

  const expanded: ExpandedState = Object.fromEntries(view.expanded.map((path) => [groupRowId(path), true]));
  const table = useReactTable({
    data: rows,
    columns,
    getRowId: (row) => row.id,
    getSubRows: (row) => (row.kind === "group" ? row.subRows : undefined),
    getRowCanExpand: (row) => row.original.kind === "group",
    getCoreRowModel: getCoreRowModel(),
    getExpandedRowModel: getExpandedRowModel(),
    manualPagination: true,
    manualSorting: true,
    enableSubRowSelection: false,
    state: { expanded, rowSelection: selection },
    onRowSelectionChange: (update) => onSelectionChange(typeof update === "function" ? update(selection) : update),
  });

  const toggleGroup = (path: string[]) => {
    const within = (p: string[]) => p.length >= path.length && path.every((v, i) => p[i] === v);
    const open = view.expanded.some((p) => p.length === path.length && within(p));
    // Closing a group closes the groups inside it too.
    onViewChange({ expanded: open ? view.expanded.filter((p) => !within(p)) : [...view.expanded, path] });
  };

  const setFilter = (column: Column, filter: Filter | null) => {
    const others = view.filters.filter((f) => !sameFilterTarget(f, column));
    onViewChange({ filters: filter ? [...others, filter] : others, page: 0, expanded: [] });
  };

  const sortBy = (column: Column) => {
    if (!column.sortField) return;
    const direction = view.sort.field === column.sortField && view.sort.direction === "DESC" ? "ASC" : "DESC";
    onViewChange({ sort: { field: column.sortField, direction }, page: 0 });
  };

  const groupRow = (row: Row<TableRow>) => {
    const group = row.original;
    if (group.kind !== "group") return null;
    const width = row.getVisibleCells().length - 1;
    const jobsOfGroup = { ...view, filters: groupFilters(view, group.path), groupBy: [], expanded: [], page: 0 };
    return (
      <tr key={row.id} className="group-row" data-group={group.group.name}>
        <td>{flexRender(row.getVisibleCells()[0].column.columnDef.cell, row.getVisibleCells()[0].getContext())}</td>
        <td colSpan={width} style={{ paddingLeft: `${0.5 + row.depth * 1.5}rem` }}>
          <button type="button" className="expander" aria-expanded={row.getIsExpanded()} onClick={() => toggleGroup(group.path)}>
            {row.getIsExpanded() ? "▾" : "▸"} {groupingLabel(group.field)}:{" "}
            <b>{group.group.name || "(none)"}</b> ({group.group.count})
          </button>{" "}
          <StateCounts counts={group.group.aggregates.state} />
          {row.getIsExpanded() && group.hidden > 0 && (
            <span className="hidden-jobs">
              {" "}
              showing the first {group.group.count - group.hidden};{" "}
              <Link path="/" params={paramsFromView(jobsOfGroup)}>
                all {group.group.count} jobs
              </Link>
            </span>
          )}
        </td>
      </tr>
    );
  };

  return (
    <table className="jobs">
      <thead>
        {table.getHeaderGroups().map((headerGroup) => (
          <tr key={headerGroup.id}>
            {headerGroup.headers.map((header) => {
              const column = COLUMN_BY_ID.get(header.column.id);
              const sorted = column?.sortField && view.sort.field === column.sortField;
              return (
                <th
                  key={header.id}
                  className={column?.sortField ? "sortable" : undefined}
                  aria-sort={sorted ? (view.sort.direction === "ASC" ? "ascending" : "descending") : undefined}
                  onClick={() => column && sortBy(column)}
                >
                  {flexRender(header.column.columnDef.header, header.getContext())}
                  {sorted && (view.sort.direction === "ASC" ? " ▲" : " ▼")}
                </th>
              );
            })}
          </tr>
        ))}
        <tr className="filters">
          <th />
          {shown.map((column) => (
            <th key={column.id}>
              <FilterCell
                column={column}
                filter={view.filters.find((f) => sameFilterTarget(f, column))}
                onChange={(filter) => setFilter(column, filter)}
              />
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {table.getRowModel().rows.map((row) =>
          row.original.kind === "group" ? (
            groupRow(row)
          ) : (
            <tr
              key={row.id}
              data-job-id={row.original.job.jobId}
              className={row.original.job.jobId === openJobId ? "job-row open" : "job-row"}
              onClick={() => row.original.kind === "job" && onOpenJob(row.original.job.jobId)}
            >
              {row.getVisibleCells().map((cell) => (
                <td key={cell.id} style={cell.column.id === "select" ? { paddingLeft: `${0.5 + row.depth * 1.5}rem` } : undefined}>
                  {flexRender(cell.column.columnDef.cell, cell.getContext())}
                </td>
              ))}
            </tr>
          ),
        )}
        {rows.length === 0 && (
          <tr>
            <td colSpan={shown.length + 1} className="empty">
              No jobs match.
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}
