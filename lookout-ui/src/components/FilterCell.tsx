import { useEffect, useState } from "react";
import type { Filter, Match } from "../api";
import { MATCH_LABELS, MATCHES, type Column } from "../columns";
import { filterFromText, textFromFilter } from "../filterText";

interface Props {
  column: Column;
  filter: Filter | undefined;
  onChange: (filter: Filter | null) => void;
}

/** A column's filter: its match type and the value, applied on Enter or when the field is left. */
export function FilterCell({ column, filter, onChange }: Props) {
  const spec = column.filter;
  const kind = spec?.kind ?? "text";
  const [match, setMatch] = useState<Match>(filter?.match ?? MATCHES[kind][0]);
  const [text, setText] = useState(filter ? textFromFilter(kind, filter) : "");
  const [problem, setProblem] = useState("");
  // Follow the URL (Back, a link) without undoing what is being typed on each re-render.
  const applied = filter ? JSON.stringify(filter) : "";
  useEffect(() => {
    const current: Filter | null = applied ? JSON.parse(applied) : null;
    setText(current ? textFromFilter(kind, current) : "");
    if (current) setMatch(current.match);
  }, [applied, kind]);
  if (!spec) return null;

  const apply = (nextMatch: Match, nextText: string) => {
    try {
      onChange(filterFromText(spec.field, kind, nextMatch, nextText));
      setProblem("");
    } catch (error) {
      setProblem((error as Error).message);
    }
  };
  return (
    <div className="filter" title={problem || undefined}>
      <select
        aria-label={`${column.header} match`}
        value={match}
        onChange={(e) => {
          setMatch(e.target.value as Match);
          apply(e.target.value as Match, text);
        }}
      >
        {MATCHES[kind].map((m) => (
          <option key={m} value={m}>
            {MATCH_LABELS[m]}
          </option>
        ))}
      </select>
      <input
        aria-label={`${column.header} filter`}
        className={problem ? "invalid" : undefined}
        value={text}
        placeholder={kind === "annotation" ? "key=value" : kind === "state" ? "running, queued" : ""}
        onChange={(e) => setText(e.target.value)}
        onBlur={() => apply(match, text)}
        onKeyDown={(e) => e.key === "Enter" && apply(match, text)}
      />
    </div>
  );
}
