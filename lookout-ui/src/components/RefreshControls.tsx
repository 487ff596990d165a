import { useIsFetching, useQueryClient } from "@tanstack/react-query";

const INTERVALS = [0, 5, 15, 30, 60];

export function RefreshControls({ seconds, onChange }: { seconds: number; onChange: (seconds: number) => void }) {
  const client = useQueryClient();
  const fetching = useIsFetching() > 0;
  return (
    <span className="refresh">
      <button type="button" onClick={() => client.invalidateQueries()} disabled={fetching}>
        {fetching ? "Refreshing…" : "Refresh"}
      </button>
      <select aria-label="Auto-refresh" value={seconds} onChange={(e) => onChange(Number(e.target.value))}>
        {INTERVALS.map((s) => (
          <option key={s} value={s}>
            {s ? `every ${s}s` : "auto-refresh off"}
          </option>
        ))}
      </select>
    </span>
  );
}
