import { PAGE_SIZES } from "../view";

interface Props {
  page: number;
  pageSize: number;
  rowsShown: number;
  hasNextPage: boolean;
  onChange: (page: number, pageSize: number) => void;
}

/** Pages without a total: counting every matching job would cost a scan at millions of jobs. */
export function Pager({ page, pageSize, rowsShown, hasNextPage, onChange }: Props) {
  const first = page * pageSize;
  return (
    <div className="pager">
      <label>
        Rows per page{" "}
        <select aria-label="Rows per page" value={pageSize} onChange={(e) => onChange(0, Number(e.target.value))}>
          {PAGE_SIZES.map((n) => (
            <option key={n}>{n}</option>
          ))}
        </select>
      </label>
      <span>
        {rowsShown ? `${first + 1}–${first + rowsShown}` : "0"}
        {hasNextPage ? ` of more than ${first + rowsShown}` : ` of ${first + rowsShown}`}
      </span>
      <button type="button" disabled={page === 0} onClick={() => onChange(page - 1, pageSize)}>
        ‹ Previous
      </button>
      <button type="button" disabled={!hasNextPage} onClick={() => onChange(page + 1, pageSize)}>
        Next ›
      </button>
    </div>
  );
}
