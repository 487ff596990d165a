import type { ReactNode } from "react";

export type Field = [name: string, value: ReactNode];

/** Named values, those without a value left out. */
export function FieldList({ fields }: { fields: Field[] }) {
  return (
    <dl className="fields">
      {fields
        .filter(([, value]) => value !== null && value !== undefined && value !== "")
        .map(([name, value]) => (
          <div key={name}>
            <dt>{name}</dt>
            <dd>{value}</dd>
          </div>
        ))}
    </dl>
  );
}
