// The browser's location as React state: the whole view lives in the URL, so a link (or a
// reload) reproduces it. Small enough that the app needs no router library.
import { useSyncExternalStore } from "react";

const CHANGE = "flotilla:locationchange";

function subscribe(onChange: () => void): () => void {
  window.addEventListener("popstate", onChange);
  window.addEventListener(CHANGE, onChange);
  return () => {
    window.removeEventListener("popstate", onChange);
    window.removeEventListener(CHANGE, onChange);
  };
}

const current = () => window.location.pathname + window.location.search;

export interface Location {
  path: string;
  params: URLSearchParams;
}

export function useLocation(): Location {
  const href = useSyncExternalStore(subscribe, current);
  const url = new URL(href, window.location.origin);
  return { path: url.pathname, params: url.searchParams };
}

/** Go to `path?params`, one step of the browser's history (Back undoes it). */
export function navigate(path: string, params: URLSearchParams): void {
  const query = params.toString();
  const href = query ? `${path}?${query}` : path;
  if (href === current()) return;
  window.history.pushState(null, "", href);
  window.dispatchEvent(new Event(CHANGE));
}
