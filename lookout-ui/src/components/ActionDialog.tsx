import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { cancelJobs, preemptJobs, reprioritizeJobs, type Selection } from "../api";

export type Action = "cancel" | "reprioritize" | "preempt";

const TITLES: Record<Action, string> = { cancel: "Cancel", reprioritize: "Reprioritise", preempt: "Preempt" };

interface Props {
  action: Action;
  /** Each becomes one request; the server does the work in batches, by ids or by filter. */
  targets: Selection[];
  what: string;
  onClose: () => void;
}

export function ActionDialog({ action, targets, what, onClose }: Props) {
  const client = useQueryClient();
  const [reason, setReason] = useState("");
  const [priority, setPriority] = useState("");
  const mutation = useMutation({
    mutationFn: async () => {
      let affected = 0;
      for (const target of targets) {
        const reply =
          action === "cancel"
            ? await cancelJobs(target, reason)
            : action === "preempt"
              ? await preemptJobs(target, reason)
              : await reprioritizeJobs(target, Number(priority));
        affected += reply.jobsAffected;
      }
      return affected;
    },
    onSettled: () => client.invalidateQueries(),
  });
  const priorityInvalid = action === "reprioritize" && (priority.trim() === "" || Number.isNaN(Number(priority)));
  return (
    <div className="dialog-backdrop">
      <div className="dialog" role="dialog" aria-label={`${TITLES[action]} jobs`}>
        <h2>
          {TITLES[action]} {what}
        </h2>
        {action === "reprioritize" ? (
          <label>
            New priority <input aria-label="New priority" value={priority} onChange={(e) => setPriority(e.target.value)} />
          </label>
        ) : (
          <label>
            Reason <input aria-label="Reason" value={reason} onChange={(e) => setReason(e.target.value)} />
          </label>
        )}
        {mutation.isSuccess && <p className="result">{mutation.data} jobs affected.</p>}
        {mutation.isError && <p className="error">{mutation.error.message}</p>}
        <div className="buttons">
          <button type="button" onClick={onClose}>
            {mutation.isSuccess ? "Close" : "Back"}
          </button>
          {!mutation.isSuccess && (
            <button type="button" className="primary" disabled={mutation.isPending || priorityInvalid} onClick={() => mutation.mutate()}>
              {mutation.isPending ? "Working…" : TITLES[action]}
            </button>
          )}
        </div>
      </div>
    </div>
  );
}
