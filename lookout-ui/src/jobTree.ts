// The rows of the jobs table: the view's page of jobs or, when grouped, its page of groups with
// the expanded ones' children. Each expanded group is its own query, fetched only once the group
// is opened (its path names every filter it needs, so all levels load at once from a link).
import { keepPreviousData, useQueries } from "@tanstack/react-query";
import { getGroups, getJobs, type Group, type Job } from "./api";
import { groupedField, groupFilters, type JobsView } from "./view";

export type TableRow =
  | { kind: "job"; id: string; job: Job }
  | {
      kind: "group";
      id: string;
      path: string[];
      field: string;
      group: Group;
      subRows?: TableRow[];
      /** Jobs of the group not shown among its rows (only the first page of them is). */
      hidden: number;
    };

const GROUPS_TAKE = 1000;

export const groupRowId = (path: string[]) => `group:${JSON.stringify(path)}`;
const jobRowId = (jobId: string) => `job:${jobId}`;

type Reply = { jobs: Job[]; continuation: string | null } | { groups: Group[] };

function request(view: JobsView, path: string[]) {
  const filters = groupFilters(view, path);
  const top = path.length === 0;
  const skip = top ? view.page * view.pageSize : 0;
  if (path.length < view.groupBy.length) {
    const take = top ? view.pageSize + 1 : GROUPS_TAKE;
    const body = { filters, groupedField: groupedField(view.groupBy[path.length]), activeJobSets: view.activeJobSets, skip, take };
    return { queryKey: ["groups", body], queryFn: (): Promise<Reply> => getGroups(body) };
  }
  const body = { filters, order: view.sort, activeJobSets: view.activeJobSets, skip, take: view.pageSize };
  return { queryKey: ["jobs", body], queryFn: (): Promise<Reply> => getJobs(body) };
}

export interface JobTree {
  rows: TableRow[];
  hasNextPage: boolean;
  fetching: boolean;
  error: Error | null;
}

export function useJobTree(view: JobsView): JobTree {
  const paths = [[], ...view.expanded.filter((p) => p.length > 0 && p.length <= view.groupBy.length)];
  const results = useQueries({
    queries: paths.map((path) => ({
      ...request(view, path),
      refetchInterval: view.refreshSeconds ? view.refreshSeconds * 1000 : (false as const),
      placeholderData: path.length === 0 ? keepPreviousData : undefined,
    })),
  });
  const replies = new Map(paths.map((p, i) => [JSON.stringify(p), results[i].data]));

  function children(path: string[]): TableRow[] | undefined {
    const reply = replies.get(JSON.stringify(path));
    if (reply === undefined) return undefined;
    if ("jobs" in reply) return reply.jobs.map((job) => ({ kind: "job", id: jobRowId(job.jobId), job }));
    const groups = path.length === 0 ? reply.groups.slice(0, view.pageSize) : reply.groups;
    return groups.map((group) => {
      const own = [...path, group.name];
      const subRows = children(own);
      const jobsShown = subRows?.filter((r) => r.kind === "job").length ?? 0;
      const leaf = own.length === view.groupBy.length;
      return {
        kind: "group",
        id: groupRowId(own),
        path: own,
        field: view.groupBy[path.length],
        group,
        subRows,
        hidden: leaf && subRows ? group.count - jobsShown : 0,
      };
    });
  }

  const top = results[0].data;
  const hasNextPage =
    top === undefined ? false : "jobs" in top ? top.continuation !== null : top.groups.length > view.pageSize;
  return {
    rows: children([]) ?? [],
    hasNextPage,
    fetching: results.some((r) => r.isFetching),
    error: results.find((r) => r.error)?.error ?? null,
  };
}
