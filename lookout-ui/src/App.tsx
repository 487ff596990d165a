import { JobSetsPage } from "./components/JobSetsPage";
import { JobsPage } from "./components/JobsPage";
import { Link } from "./components/Link";
import { useLocation } from "./location";

export function App() {
  const location = useLocation();
  const onJobSets = location.path.startsWith("/jobsets");
  return (
    <>
      <header className="top">
        <span className="brand">Flotilla Lookout</span>
        <nav>
          <Link path="/" params={new URLSearchParams()} className={onJobSets ? "" : "current"}>
            Jobs
          </Link>
          <Link path="/jobsets" params={new URLSearchParams()} className={onJobSets ? "current" : ""}>
            Job sets
          </Link>
        </nav>
      </header>
      {onJobSets ? <JobSetsPage location={location} /> : <JobsPage location={location} />}
    </>
  );
}
