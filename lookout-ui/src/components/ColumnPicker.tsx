import { COLUMNS } from "../columns";

/** Which columns show, in the table's order. */
export function ColumnPicker({ columns, onChange }: { columns: string[]; onChange: (columns: string[]) => void }) {
  const toggle = (id: string) =>
    onChange(columns.includes(id) ? columns.filter((c) => c !== id) : COLUMNS.map((c) => c.id).filter((c) => c === id || columns.includes(c)));
  return (
    <details className="column-picker">
      <summary>Columns</summary>
      <div className="menu">
        {COLUMNS.map((c) => (
          <label key={c.id}>
            <input type="checkbox" checked={columns.includes(c.id)} onChange={() => toggle(c.id)} /> {c.header}
          </label>
        ))}
      </div>
    </details>
  );
}
