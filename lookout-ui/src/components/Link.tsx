import type { MouseEvent, ReactNode } from "react";
import { navigate } from "../location";

/** An in-app link: a real href (so it can be copied or opened in a tab), followed without a reload. */
export function Link({ path, params, children, className }: { path: string; params: URLSearchParams; children: ReactNode; className?: string }) {
  const query = params.toString();
  const onClick = (event: MouseEvent) => {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(path, params);
  };
  return (
    <a href={query ? `${path}?${query}` : path} onClick={onClick} className={className}>
      {children}
    </a>
  );
}
