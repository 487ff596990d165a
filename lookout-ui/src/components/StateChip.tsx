import type { JobState } from "../api";

export function StateChip({ state, count }: { state: JobState; count?: number }) {
  return (
    <span className={`state state-${state.toLowerCase()}`} data-state={state}>
      {state.toLowerCase()}
      {count !== undefined && <b> {count}</b>}
    </span>
  );
}
