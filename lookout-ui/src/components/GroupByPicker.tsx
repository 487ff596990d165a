import { COLUMN_BY_ID, GROUPABLE } from "../columns";

/** Nested grouping: the fields in order, outermost first. */
export function GroupByPicker({ groupBy, onChange }: { groupBy: string[]; onChange: (groupBy: string[]) => void }) {
  const left = GROUPABLE.filter((c) => !groupBy.includes(c.id));
  return (
    <span className="group-by">
      Group by
      {groupBy.map((field) => (
        <span key={field} className="chip">
          {COLUMN_BY_ID.get(field)?.header ?? field}
          <button type="button" aria-label={`Stop grouping by ${field}`} onClick={() => onChange(groupBy.filter((f) => f !== field))}>
            ×
          </button>
        </span>
      ))}
      {left.length > 0 && (
        <select aria-label="Add a grouping" value="" onChange={(e) => e.target.value && onChange([...groupBy, e.target.value])}>
          <option value="">{groupBy.length ? "then by…" : "(none)"}</option>
          {left.map((c) => (
            <option key={c.id} value={c.id}>
              {c.header}
            </option>
          ))}
        </select>
      )}
    </span>
  );
}
