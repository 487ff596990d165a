import { JOB_STATES, type JobState } from "../api";
import { StateChip } from "./StateChip";

/** A group's jobs per state, the states with none left out. */
export function StateCounts({ counts }: { counts: Partial<Record<JobState, number>> | undefined }) {
  return (
    <span className="state-counts">
      {JOB_STATES.filter((s) => counts?.[s]).map((s) => (
        <StateChip key={s} state={s} count={counts?.[s]} />
      ))}
    </span>
  );
}
