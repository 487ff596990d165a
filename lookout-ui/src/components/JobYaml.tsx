import { useQuery } from "@tanstack/react-query";
import { getJobSpec } from "../api";
import { toYaml } from "../yaml";

export function JobYaml({ jobId }: { jobId: string }) {
  const spec = useQuery({ queryKey: ["jobSpec", jobId], queryFn: () => getJobSpec(jobId) });
  if (spec.error) return <p className="error">{spec.error.message}</p>;
  if (!spec.data) return <p>Loading…</p>;
  return <pre className="yaml">{toYaml(spec.data)}</pre>;
}
