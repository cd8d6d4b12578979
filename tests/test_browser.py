"""The explorers as a learner sees them: JupyterLab 4 in headless Chromium runs each notebook that shows one.

For every chosen instructor notebook whose code builds an explorer (`SomethingExplorer(`), in the smoke tier
(by default one notebook per kind of explorer, 01, 02, 03 and 05: 06 and 07 show notebook 03's embedding
explorer again, 08 a standard slider, and their training would take CI's budget; COURSE_BROWSER_NOTEBOOKS
chooses, e.g. "06 07 08"):
  * Run All finishes: every code cell has run, and no cell shows an error or a traceback;
  * every widget output renders as a widget: no "Error displaying widget", no "Loading widget...", no
    plain-text stand-in such as "VBox(children=...)" where a widget should be;
  * each explorer is one output holding one figure (no static copy beside the live one);
  * moving the explorer's first slider with the keyboard redraws its figure.
Screenshots of each explorer before and after the slider move go to COURSE_TEST_ARTIFACTS (default
test-artifacts/browser/); the test prints where.

JupyterLab serves a copy of notebooks/, so that its checkpoints and saves never write into the course, and
exposes its app object, so that the test runs Lab's own commands and reads its notebook model. Kernels run
in the smoke tier, read COURSE_DATA_DIR and train in a fresh runs folder; each is shut down after its
notebook, so that the next one has the CPUs to itself. Needs Chromium (Debian: apt-get install chromium;
elsewhere set COURSE_BROWSER to its binary) and Playwright's Python package, which drives that browser (no
`playwright install`); without them the module is skipped.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is missing: pip install "
                               "playwright (the browser itself: apt-get install chromium, or set COURSE_BROWSER)")
pytest.importorskip("jupyterlab", reason="JupyterLab is missing: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[1]
EXPLORER = re.compile(r"\b[A-Z]\w*Explorer\(")  # a cell that builds (and shows) an explorer
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in a traceback
WIDGET_REPR = re.compile(r"^\s*[A-Z]\w*\((children|value|description|layout|options)=")  # a widget shown as text
RUN_TIMEOUT_S = 360  # Run All of one notebook in the smoke tier; the slowest, 07, takes about 150 s on 2 CPU cores
REDRAW_TIMEOUT_S = 60  # one slider step; the slowest is a new t-SNE map of 300 points
VIEWPORT = {"width": 1400, "height": 1000}


def find_browser() -> tuple[str | None, str]:
    """(path to a Chromium binary, or None; why not): COURSE_BROWSER, else the usual names on PATH."""
    chosen = os.environ.get("COURSE_BROWSER", "").strip()
    if chosen:
        path = shutil.which(chosen)  # a name on PATH, or a path, that is an executable file
        return (path, "") if path else (None, f"COURSE_BROWSER={chosen} is not an executable file")
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name), ""
    return None, "no Chromium found: apt-get install chromium (Debian), or set COURSE_BROWSER to a Chromium binary"


BROWSER, WHY_NOT = find_browser()
if BROWSER is None:
    pytest.skip(WHY_NOT, allow_module_level=True)


# Notebooks run here (number prefixes): by default one per kind of explorer (temperature, views, embedding,
# adaptation). 06 and 07 build the EmbeddingExplorer of 03 on drawings, 08 a standard slider over LiveFigure
# (tests/test_widgets.py displays every explorer); together their training adds about eight minutes.
CHOSEN = os.environ.get("COURSE_BROWSER_NOTEBOOKS", "01 02 03 05").split()


def explorer_cells() -> dict[str, list[str]]:
    """{notebook file name: ids of its cells that build an explorer}, for each chosen instructor notebook with one."""
    found = {}
    for path in sorted((REPO / "notebooks").glob("[0-9]*.ipynb")):
        if path.name[:2] not in CHOSEN:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        ids = [c["id"] for c in cells if c["cell_type"] == "code" and EXPLORER.search("".join(c["source"]))]
        if ids:
            found[path.name] = ids
    return found


EXPLORERS = explorer_cells()


# -- the server ---------------------------------------------------------------------------------------------
class Lab:
    """A running JupyterLab: its URL, token and log, and the REST calls the test needs."""

    def __init__(self, base: str, token: str, log: Path):
        self.base, self.token, self.log = base, token, log

    def api(self, method: str, path: str) -> bytes:
        request = urllib.request.Request(f"{self.base}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def shut_down_kernels(self) -> None:
        """End every session and its kernel (DELETE waits until the kernel has stopped)."""
        for session in json.loads(self.api("GET", "/api/sessions")):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _mirror_course(dest: Path) -> Path:
    """What the notebooks see of the repository: a copy of notebooks/ (Lab writes checkpoints beside a notebook)
    and links to everything else (notebook 02 reads ../benchmarks/results). Returns the copied notebooks/."""
    dest.mkdir()
    for entry in REPO.iterdir():
        if entry.name == "notebooks":
            shutil.copytree(entry, dest / entry.name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        elif entry.name != ".git":
            (dest / entry.name).symlink_to(entry)
    return dest / "notebooks"


def _lab_settings(folder: Path) -> Path:
    """User settings for this Lab only: no autosave (outputs stay in the browser), no news pop-up over the page."""
    settings = {"docmanager-extension/plugin": {"autosave": False},
                "apputils-extension/notification": {"fetchNews": "false"}}
    for name, values in settings.items():
        path = folder / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Run in the server's process before exec: Linux sends it SIGTERM when pytest dies, so no server outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_until_up(lab: Lab, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode} before answering:\n{lab.log_tail()}")
        try:
            lab.api("GET", "/api/status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout_s:.0f} s:\n{lab.log_tail()}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab 4 on loopback with a random token, serving a copy of the course; stopped at the end."""
    root = tmp_path_factory.mktemp("browser")
    notebooks = _mirror_course(root / "course")
    env = {**os.environ, "COURSE_TIER": "smoke", "COURSE_RUNS_DIR": str(root / "runs"),
           "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "IPYTHONDIR": str(root / "ipython")}  # a learner's own Jupyter and IPython settings stay out of it
    env.pop("MPLBACKEND", None)  # the kernel must use Jupyter's inline backend, as a learner's does
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={notebooks}", "--LabApp.expose_app_in_browser=True",
               f"--LabApp.user_settings_dir={_lab_settings(root / 'settings')}",
               f"--LabApp.workspaces_dir={root / 'workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--ServerApp.allow_root=True")  # CI containers run as root; the server stays on loopback
    log = root / "jupyterlab.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    server = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        process.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium at a lower CPU priority: on 2 cores the kernel, not the page, should get the time."""
    launcher = tmp_path_factory.mktemp("chromium") / "chromium"
    launcher.write_text(f'#!/bin/sh\nexec nice -n 10 "{BROWSER}" "$@"\n')
    launcher.chmod(0o755)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=launcher if shutil.which("nice") else BROWSER,
                                              headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts():
    """The screenshots' folder; at the end, how long the whole browser test took (its budget: about 7 minutes)."""
    folder = Path(os.environ.get("COURSE_TEST_ARTIFACTS") or REPO / "test-artifacts" / "browser")
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print(f"\nbrowser test: screenshots in {folder}")
    yield folder
    print(f"\nbrowser test: {time.monotonic() - start:.0f} s in all, JupyterLab and Chromium included")


# -- the page -----------------------------------------------------------------------------------------------
PANEL = "window.jupyterapp.shell.currentWidget"

RUN_STATE = """() => {  // what Run All has done so far, from Lab's notebook model
  const panel = window.jupyterapp.shell.currentWidget, kernel = panel.sessionContext.session?.kernel;
  const state = {kernel: kernel ? kernel.status : "none", pending: [], errors: []};
  for (const cell of panel.content.widgets) {
    const model = cell.model;
    if (model.type !== "code" || !model.sharedModel.getSource().trim()) continue;
    if (model.executionCount === null) state.pending.push(model.id);
    const allowed = (model.getMetadata("tags") || []).includes("raises-exception");
    for (let i = 0; i < model.outputs.length; i++) {
      const out = model.outputs.get(i).toJSON();
      if (out.output_type === "error" && !allowed)
        state.errors.push(`cell ${model.id}: ${out.ename}: ${out.evalue}\\n${out.traceback.slice(-3).join("\\n")}`);
    }
  }
  return state;
}"""

OUTPUTS = """() => {  // each code cell's outputs: the model's bundles, and what the page shows at the top level
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.widgets.filter(cell => cell.model.type === "code").map(cell => {
    cell.node.setAttribute("data-test-cell", cell.model.id);
    const bundles = [];
    for (let i = 0; i < cell.model.outputs.length; i++) bundles.push(Object.keys(cell.model.outputs.get(i).data));
    const shown = Array.from(cell.node.querySelectorAll(
        ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output")).map(node => ({
      mime: node.getAttribute("data-mime-type"), text: node.textContent.slice(0, 2000),
      widget: node.querySelector(".jupyter-widgets") !== null, images: node.querySelectorAll("img").length}));
    return {id: cell.model.id, bundles, shown};
  });
}"""


def _open(page, lab: Lab, name: str) -> None:
    """Open notebook `name` in a fresh Lab page and wait until its kernel is ready."""
    page.goto(f"{lab.base}/lab/tree/{name}?reset&token={lab.token}")
    # The app object appears on window only once Lab's bundle has run: until then the predicate must be false, not
    # throw (an exception ends Playwright's wait at once; that raced a loaded machine's page load).
    ready = "window.jupyterapp?.shell?.currentWidget"
    page.wait_for_function(f"() => {ready}?.context?.path === {json.dumps(name)} && {ready}.sessionContext",
                           timeout=120_000)
    page.evaluate(f"async () => {{ await {PANEL}.context.ready; await {PANEL}.sessionContext.ready; }}")
    page.wait_for_function(f"() => {PANEL}.sessionContext.session?.kernel?.status === 'idle'", timeout=120_000)
    page.evaluate("window.jupyterapp.shell.collapseLeft()")  # the file browser: room for the figures


def _run_all(page, name: str) -> float:
    """Run All with Lab's own command; fail at the first error output. Returns the seconds it took."""
    start = time.monotonic()
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")  # not awaited: polled
    while True:
        time.sleep(1.0)
        state = page.evaluate(RUN_STATE)
        errors = [ANSI.sub("", error) for error in state["errors"]]
        assert not errors, f"{name}: a cell failed in the browser:\n" + "\n".join(errors)
        assert state["kernel"] != "dead", f"{name}: the kernel died (cells not run: {state['pending']})"
        if not state["pending"] and state["kernel"] == "idle":
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        assert elapsed < RUN_TIMEOUT_S, (f"{name}: Run All still running after {elapsed:.0f} s; cells not run yet: "
                                         f"{state['pending']}")


def _check_outputs(page, name: str) -> list[dict]:
    """Every output as a learner sees it: widgets drawn as widgets, no error and no traceback. Returns OUTPUTS."""
    try:
        page.wait_for_function("() => !Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                               ".some(node => node.textContent.includes('Loading widget...'))", timeout=60_000)
    except sync_api.TimeoutError:
        raise AssertionError(f"{name}: a widget still says 'Loading widget...' a minute after Run All") from None
    cells = page.evaluate(OUTPUTS)
    for cell in cells:
        where = f"{name}, cell {cell['id']}"
        for out in cell["shown"]:
            assert "Error displaying widget" not in out["text"], f"{where}: {out['text'][:300]}"
            assert "Loading widget..." not in out["text"], f"{where}: a widget never finished loading"
            assert not (out["mime"] == "application/vnd.jupyter.stderr" and "Traceback" in out["text"]), \
                f"{where}: a traceback on stderr:\n{out['text'][-1500:]}"
            assert not (out["mime"] == "text/plain" and WIDGET_REPR.match(out["text"])), \
                f"{where}: a widget shown as text ({out['text'][:80]}...): is jupyterlab_widgets installed?"
        n_widgets = sum("application/vnd.jupyter.widget-view+json" in bundle for bundle in cell["bundles"])
        drawn = sum(out["widget"] and out["mime"] is None for out in cell["shown"])
        assert drawn == n_widgets, f"{where}: {n_widgets} widget outputs, but {drawn} drawn as widgets: {cell['shown']}"
    return cells


def _figure_src(page, cell_id: str) -> str:
    return page.locator(f'[data-test-cell="{cell_id}"] .jp-Cell-outputArea .jupyter-widgets img').first.get_attribute("src")


def _show(page, selector: str) -> None:
    """Scroll the explorer to the top of the notebook's view, so that a screenshot shows its controls and figure."""
    explorer = page.locator(f"{selector} .jupyter-widgets").first
    for _ in range(2):  # cells above, skipped by content-visibility until seen, take their real height on the way
        explorer.evaluate("node => node.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)


def _check_explorer(page, name: str, cell: dict, artifacts: Path) -> float:
    """One explorer: a single figure, inside the widget; a slider step redraws it. Returns the redraw's seconds."""
    where, stem = f"{name}, cell {cell['id']}", f"{Path(name).stem}-{cell['id']}"
    explorers = [out for out in cell["shown"] if out["widget"] and out["images"]]
    images = sum(out["images"] for out in cell["shown"])
    assert len(explorers) == 1 and images == 1, (f"{where}: expected one explorer showing one figure, got "
                                                 f"{len(explorers)} explorer(s) and {images} image(s): {cell['shown']}")
    selector = f'[data-test-cell="{cell["id"]}"] .jp-Cell-outputArea'
    handle = page.locator(f"{selector} .widget-slider .noUi-handle").first  # ipywidgets 8: a noUiSlider handle
    readout = page.locator(f"{selector} .widget-slider .widget-readout").first
    _show(page, selector)
    page.screenshot(path=artifacts / f"{stem}-before.png", full_page=True)
    before_src, before_value = _figure_src(page, cell["id"]), readout.text_content()
    start = time.monotonic()
    handle.focus()
    page.keyboard.press("ArrowRight")  # what a learner's keyboard does: one step up
    try:
        page.wait_for_function("""([selector, old]) => {
              const img = document.querySelector(selector + " .jupyter-widgets img");
              return img !== null && img.getAttribute("src") !== old; }""",
                               arg=[selector, before_src], timeout=REDRAW_TIMEOUT_S * 1000)
    except sync_api.TimeoutError:
        raise AssertionError(f"{where}: the figure did not change within {REDRAW_TIMEOUT_S} s of moving the slider from "
                             f"{before_value} to {readout.text_content()} (an error in the explorer's callback goes to "
                             f"Lab's log console, not to the cell)") from None
    seconds = time.monotonic() - start
    assert readout.text_content() != before_value, f"{where}: the slider did not move ({before_value})"
    _show(page, selector)
    page.screenshot(path=artifacts / f"{stem}-after.png", full_page=True)
    return seconds


@pytest.mark.parametrize("name", sorted(EXPLORERS))
def test_explorer_notebook_in_the_browser(name, lab, browser, artifacts):
    """Run All in Lab, then every output and each explorer as described at the top; the kernel is shut down after."""
    start = time.monotonic()
    page = browser.new_page(viewport=VIEWPORT)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    try:
        _open(page, lab, name)
        run_s = _run_all(page, name)
        cells = {cell["id"]: cell for cell in _check_outputs(page, name)}
        redraws = [_check_explorer(page, name, cells[cell_id], artifacts) for cell_id in EXPLORERS[name]]
        assert not page_errors, f"{name}: uncaught errors in the page: {page_errors}"
        print(f"\n{name}: {time.monotonic() - start:.0f} s, of which Run All {run_s:.0f} s and slider redraw "
              f"{', '.join(f'{s:.1f} s' for s in redraws)}; screenshots in {artifacts}")
    except Exception:
        shot = artifacts / f"{Path(name).stem}-failure.png"
        try:
            page.screenshot(path=shot, full_page=True)
        except sync_api.Error:
            shot = "none (the page is gone)"
        print(f"\n{name}: failed; screenshot {shot}; JupyterLab log {lab.log}, its end:\n{lab.log_tail(1500)}")
        raise
    finally:
        page.close()  # first the page, so that Lab does not try to reconnect to the kernel being shut down
        lab.shut_down_kernels()
