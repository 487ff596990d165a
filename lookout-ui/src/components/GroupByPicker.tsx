import { useState } from "react";
import { GROUPABLE, groupingLabel } from "../columns";
import { annotationGrouping } from "../view";

/** Nested grouping: fields or annotation keys in order, outermost first. */
export function GroupByPicker({ groupBy, onChange }: { groupBy: string[]; onChange: (groupBy: string[]) => void }) {
  const [key, setKey] = useState("");
  const left = GROUPABLE.filter((c) => !groupBy.includes(c.id));
  const addAnnotation = () => {
    const grouping = annotationGrouping(key.trim());
    if (key.trim() && !groupBy.includes(grouping)) onChange([...groupBy, grouping]);
    setKey("");
  };
  return (
    <span className="group-by">
      Group by
      {groupBy.map((grouping) => (
        <span key={grouping} className="chip">
          {groupingLabel(grouping)}
          <button type="button" aria-label={`Stop grouping by ${grouping}`} onClick={() => onChange(groupBy.filter((g) => g !== grouping))}>
            ×
          </button>
        </span>
      ))}
      <select aria-label="Add a grouping" value="" onChange={(e) => e.target.value && onChange([...groupBy, e.target.value])}>
        <option value="">{groupBy.length ? "then by…" : "(none)"}</option>
        {left.map((c) => (
          <option key={c.id} value={c.id}>
            {c.header}
          </option>
        ))}
      </select>
      <input
        aria-label="Group by annotation"
        className="annotation-key"
        placeholder="or an annotation key"
        value={key}
        onChange={(e) => setKey(e.target.value)}
        onKeyDown={(e) => e.key === "Enter" && addAnnotation()}
      />
    </span>
  );
}
