"""Every notebook in notebooks/ executes (nbclient) on the analytics store of a real run made
here: jobs that succeed, fail and wait, through the stack's scheduler and local executor, and
the analytics sink following the log; a cell that raises fails the test."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from flotilla.analytics.query import select
from flotilla.stack import FlotillaProcess
from tests.integration.jobs import NOWHERE, all_terminal, job, new_queue, submit, wait_for, watch

pytestmark = pytest.mark.integration

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
HTML_DIR = os.environ.get("FLOTILLA_NOTEBOOK_HTML_DIR", "")
"""Where CI (``.ci/run``) keeps each executed notebook as HTML, an artefact of the run."""


@pytest.fixture(scope="module")
def run_data_dir(stack, tmp_path_factory: pytest.TempPathFactory):
    """A data dir whose analytics store holds a real run; its sink keeps running."""
    client = stack.client()
    queue = new_queue(client)
    finishing = [job(["true"]), job(["sleep", "1"]), job(["sh", "-c", "exit 3"])]
    job_ids = submit(client, queue, "nb", finishing)
    waiting = submit(client, queue, "nb-wait", [job(["true"], node_selector=NOWHERE)])
    watch(client, queue, "nb", all_terminal(job_ids))
    data_dir = tmp_path_factory.mktemp("notebook-run")
    settings = copy.deepcopy(stack.settings)
    settings.data_dir = str(data_dir)
    sink = FlotillaProcess("analytics", settings, data_dir / "logs")
    sink.start()
    try:
        wait_for(
            lambda: (
                select(f"SELECT count(*) AS n FROM jobs WHERE queue = '{queue}'", data_dir)["n"] == [4]
                and select(
                    f"SELECT count(*) AS n FROM scheduling_reports WHERE job_id = '{waiting[0]}'", data_dir
                )["n"]
                != [0]
            ),
            60,
            0.5,
            "the run in the store",
        )
        yield data_dir
    finally:
        sink.stop()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_the_notebook_executes_on_the_store_of_a_real_run(
    notebook: Path, run_data_dir: Path, stack, monkeypatch
):
    monkeypatch.setenv("FLOTILLA_DATA_DIR", str(run_data_dir))
    # what_if replays the run under the config it ran with (and a changed one)
    monkeypatch.setenv("FLOTILLA_SCHEDULER_CONFIG_FILE", stack.settings.scheduler.config_file)
    executed = nbformat.read(notebook, as_version=4)
    NotebookClient(executed, timeout=180, kernel_name="python3").execute()
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # it drew its plots
    if HTML_DIR:
        from nbconvert import HTMLExporter

        html, _ = HTMLExporter().from_notebook_node(executed)
        Path(HTML_DIR).mkdir(parents=True, exist_ok=True)
        (Path(HTML_DIR) / f"{notebook.stem}.html").write_text(html)
