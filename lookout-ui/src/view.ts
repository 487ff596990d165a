// The jobs view (filters, grouping, order, page, columns, expanded groups, auto-refresh) and its
// form in the URL's query string. Defaults are left out of the URL, so links stay short.
import type { Filter, Order } from "./api";
import { DEFAULT_COLUMNS } from "./columns";

export interface JobsView {
  filters: Filter[];
  groupBy: string[];
  sort: Order;
  page: number;
  pageSize: number;
  columns: string[];
  /** Expanded groups, each as the values of the grouped fields from the top down. */
  expanded: string[][];
  refreshSeconds: number;
  activeJobSets: boolean;
}

export const PAGE_SIZES = [25, 50, 100, 500];
const DEFAULT_SORT: Order = { field: "jobId", direction: "DESC" };

function json<T>(text: string | null, fallback: T): T {
  if (!text) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

const list = (text: string | null) => (text ? text.split(",").filter(Boolean) : []);

export function viewFromParams(params: URLSearchParams): JobsView {
  const [field, direction] = (params.get("sort") ?? "").split(":");
  return {
    filters: json<Filter[]>(params.get("f"), []),
    groupBy: list(params.get("g")),
    sort: field ? { field, direction: direction === "ASC" ? "ASC" : "DESC" } : DEFAULT_SORT,
    page: Math.max(0, Number(params.get("page") ?? 0) || 0),
    pageSize: Number(params.get("ps")) || PAGE_SIZES[1],
    columns: params.has("cols") ? list(params.get("cols")) : DEFAULT_COLUMNS,
    expanded: json<string[][]>(params.get("e"), []),
    refreshSeconds: Number(params.get("refresh")) || 0,
    activeJobSets: params.get("active") === "1",
  };
}

export function paramsFromView(view: JobsView): URLSearchParams {
  const params = new URLSearchParams();
  if (view.filters.length) params.set("f", JSON.stringify(view.filters));
  if (view.groupBy.length) params.set("g", view.groupBy.join(","));
  if (view.sort.field !== DEFAULT_SORT.field || view.sort.direction !== DEFAULT_SORT.direction) {
    params.set("sort", `${view.sort.field}:${view.sort.direction}`);
  }
  if (view.page) params.set("page", String(view.page));
  if (view.pageSize !== PAGE_SIZES[1]) params.set("ps", String(view.pageSize));
  if (view.columns.join(",") !== DEFAULT_COLUMNS.join(",")) params.set("cols", view.columns.join(","));
  if (view.expanded.length) params.set("e", JSON.stringify(view.expanded));
  if (view.refreshSeconds) params.set("refresh", String(view.refreshSeconds));
  if (view.activeJobSets) params.set("active", "1");
  return params;
}

const ANNOTATION = "annotation:";

/** A grouping of the view (`groupBy` holds a column id, or "annotation:<key>") as the API names it. */
export function groupedField(grouping: string): { field: string; isAnnotation: boolean } {
  return grouping.startsWith(ANNOTATION)
    ? { field: grouping.slice(ANNOTATION.length), isAnnotation: true }
    : { field: grouping, isAnnotation: false };
}

export const annotationGrouping = (key: string) => `${ANNOTATION}${key}`;

/** The view's filters and, for a group, one exact filter per grouped field above it. */
export function groupFilters(view: JobsView, path: string[]): Filter[] {
  return [
    ...view.filters,
    ...path.map((value, depth) => ({ ...groupedField(view.groupBy[depth]), match: "exact" as const, value })),
  ];
}
