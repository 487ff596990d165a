// A column filter as the user types it and as the API takes it. "anyOf" takes a comma-separated
// list; resources take Kubernetes quantities ("500m", "1Gi"); times take any date the browser
// reads ("2026-12-01 14:00"); the annotations column takes "key=value", or "key" for "has key".
import type { Filter, Match } from "./api";
import type { FilterKind } from "./columns";
import { formatBytes, formatCpu, parseQuantity } from "./format";

function scalar(kind: FilterKind, text: string): string | number {
  const trimmed = text.trim();
  switch (kind) {
    case "number":
      if (trimmed === "" || Number.isNaN(Number(trimmed))) throw new Error(`"${trimmed}" is not a number`);
      return Number(trimmed);
    case "cpu":
    case "bytes": {
      const value = parseQuantity(trimmed);
      if (Number.isNaN(value)) throw new Error(`"${trimmed}" is not a quantity (e.g. 500m, 2, 1Gi)`);
      return kind === "cpu" ? Math.round(value * 1000) : Math.round(value);
    }
    case "time": {
      const date = new Date(trimmed);
      if (Number.isNaN(date.getTime())) throw new Error(`"${trimmed}" is not a date and time`);
      return date.toISOString();
    }
    case "state":
      return trimmed.toUpperCase();
    default:
      return trimmed;
  }
}

/** The API filter for what was typed; null when the text is empty; throws naming what is wrong. */
export function filterFromText(field: string, kind: FilterKind, match: Match, text: string): Filter | null {
  if (!text.trim()) return null;
  if (kind === "annotation") {
    const [key, ...rest] = text.split("=");
    if (match === "exists" || rest.length === 0) {
      return { field: key.trim(), match: "exists", value: null, isAnnotation: true };
    }
    return { field: key.trim(), match, value: rest.join("=").trim(), isAnnotation: true };
  }
  if (match === "anyOf") {
    const values = text.split(",").filter((v) => v.trim()).map((v) => scalar(kind, v));
    return { field, match, value: values };
  }
  return { field, match, value: scalar(kind, text) };
}

function shown(kind: FilterKind, value: unknown): string {
  if (kind === "cpu" && typeof value === "number") return formatCpu(value);
  if (kind === "bytes" && typeof value === "number") return formatBytes(value);
  return String(value);
}

export function textFromFilter(kind: FilterKind, filter: Filter): string {
  if (kind === "annotation") return filter.match === "exists" ? filter.field : `${filter.field}=${filter.value}`;
  if (Array.isArray(filter.value)) return filter.value.map((v) => shown(kind, v)).join(", ");
  return shown(kind, filter.value);
}
