"""The course as a student meets it: JupyterLab in a browser, and a slider that redraws its figure.

nbval (tests/test_notebooks.py) runs every cell but renders nothing, so a widget front end that cannot
show the kernel's widgets (after a version mismatch between ipywidgets and JupyterLab's widget manager:
an error icon, or "Error displaying widget: model not found" in older versions) would pass it and break
every slider of the course. This test starts JupyterLab as `bash run.sh course --no-browser` does, opens
lesson 01 in headless Chromium driven by Playwright, runs all cells, moves a slider of the explorer in
section 7 and checks that the figure under the sliders redraws.

It needs Debian's `chromium` (`apt-get install chromium`; `bash run.sh test` installs it when run as
root) and the Python package `playwright` (in the `test` extra). Playwright's own browser download is not
used. Without either, the test is skipped with a message that says what to install.
"""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01_images_and_warps.ipynb"
SLIDER = "rotation (degrees)"  # a slider of widgets.transform_explorer_widget, in lesson 01's section 7
KEY_PRESSES = 15  # one slider step (1 degree) each
# Chromium as root on a machine without network: no sandbox, no GPU, no background connections.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHROMIUM_HINT = ("install Debian's chromium: `apt-get install chromium` as root (`bash run.sh test` does it "
                 "when it runs as root)")
PLAYWRIGHT_HINT = ("`pip install playwright` (in regedu's `test` extra, which `bash run.sh test` installs); "
                   "do not run `playwright install`: the test drives the system's chromium")

pytestmark = pytest.mark.slow


def find_chromium():
    """The system's Chromium executable, or None."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip(f"browser test needs Chromium, which is not installed: {CHROMIUM_HINT}")
    return path


@pytest.fixture
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"browser test needs the Python package playwright: {PLAYWRIGHT_HINT}")
    with sync_playwright() as driver:
        yield driver


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(url, process, log, timeout=90):
    """Poll ``url`` until the server answers, failing with its log if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def jupyter_lab(tmp_path):
    """JupyterLab serving a copy of lesson 01, started as `bash run.sh course --no-browser` does.

    Yields the lesson's URL (with the token). The copy keeps JupyterLab's autosave away from the
    committed notebook; the kernel runs in fast mode and picks matplotlib's inline backend itself, as it
    does for a student (the MPLBACKEND=Agg of the test command is removed).
    """
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(ROOT / "notebooks" / LESSON, notebooks / LESSON)
    env = {name: value for name, value in os.environ.items() if name != "MPLBACKEND"}
    env.update(REGEDU_FAST="1", JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "jupyter-workspaces"))
    env.setdefault("OMP_NUM_THREADS", "1")
    port, token = free_port(), uuid.uuid4().hex
    jupyter = Path(sys.executable).with_name("jupyter")  # the venv's, as run.sh uses
    launcher = [str(jupyter)] if jupyter.exists() else [sys.executable, "-m", "jupyter"]
    command = [*launcher, "lab", str(notebooks), "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        command.append("--allow-root")  # as run.sh does
    log = tmp_path / "jupyter.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", process, log)
        yield f"{base}/lab/tree/{LESSON}?reset&token={token}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server shuts its kernel down as it stops
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_idle_kernel(page, timeout_s=60):
    """Wait until the status bar says the notebook's kernel is connected and idle ("Python 3 ... | Idle")."""
    page.wait_for_function("() => { const bar = document.querySelector('.jp-StatusBar-Widget');"
                           " return bar !== null && /\\|\\s*Idle/.test(bar.innerText)"
                           " && !bar.innerText.includes('No Kernel'); }", timeout=timeout_s * 1000)


def run_all_cells(page, timeout_s=150):
    """Run > Run All Cells from JupyterLab's menu, then wait until no cell is queued or running.

    In a fresh kernel the cells are numbered 1, 2, 3, ... as they run; a cell that failed stops the run,
    and the cells after it keep the numbers stored in the file (or none). Fails with the first error.
    """
    wait_for_idle_kernel(page)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    running = ("() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))"
               ".some(prompt => prompt.textContent.includes('*'))")
    page.wait_for_function(running, timeout=30_000)
    page.wait_for_function(f"() => !({running})()", timeout=timeout_s * 1000)
    # textContent, not innerText: JupyterLab does not lay out the cells scrolled out of view
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()
    numbers = [prompt.strip(" []:") for prompt in prompts]
    if numbers != [str(n) for n in range(1, len(prompts) + 1)]:
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        detail = errors.last.text_content()[-2000:] if errors.count() else "(no error output shown)"
        pytest.fail(f"Run All Cells did not run the {len(prompts)} code cells of {LESSON} in order "
                    f"(prompts {numbers}); the last error output:\n{detail}")


def dismiss_notifications(page):
    """Close JupyterLab's pop-up notifications (such as its news question), which could cover a figure."""
    for close in page.locator(".jp-Notification-Toast-Close").all():
        if close.is_visible():
            close.click()


def fail_on_widget_errors(page, console_errors):
    """Fail with a clear message when a cell's output shows a widget that could not be rendered.

    ipywidgets 8 draws an error icon ("Click to show javascript error") where older versions wrote
    "Error displaying widget: model not found"; the reason, such as "Module @jupyter-widgets/controls,
    version ^9.0.0 is not registered", is in the browser's console.
    """
    outputs = page.locator(".jp-OutputArea-output").all_text_contents()  # cells out of view too
    shown = [text.strip() for text in outputs
             if any(symptom in text for symptom in ("Error displaying widget", "model not found"))]
    error_icons = page.locator(".jupyter-widgets-error-widget").count()
    if shown or error_icons:
        what = shown[0][:300] if shown else f"widgets drawn as an error icon: {error_icons}"
        pytest.fail(f"JupyterLab could not render the widgets of {LESSON} ({what}); the browser said: "
                    f"{widget_errors(console_errors)}. ipywidgets (in the kernel) and jupyterlab_widgets "
                    "(JupyterLab's widget manager) probably do not match: reinstall them together "
                    "(pip install -U ipywidgets jupyterlab_widgets).")


def widget_errors(console_errors, count=3):
    """The first lines of the browser console's first few distinct errors (about widgets, if any)."""
    first_lines = list(dict.fromkeys(" ".join(error.strip().splitlines()[0].split())
                                     for error in console_errors if error.strip()))
    about_widgets = [line for line in first_lines if "widget" in line.lower()]
    return "; ".join((about_widgets or first_lines)[:count])[:600] or "(no error in the console)"


def find_slider(page, label, console_errors):
    """The interact widget and the handle of its slider called ``label``."""
    interact = page.locator(".widget-interact").filter(has=page.locator(".widget-slider"))
    if interact.count() == 0:
        pytest.fail(f"no ipywidgets slider was rendered in {LESSON} (is JupyterLab's widget manager "
                    "@jupyter-widgets/jupyterlab-manager installed and enabled? "
                    f"`jupyter labextension list`); the browser said: {widget_errors(console_errors)}")
    interact = interact.first
    slider = interact.locator(".widget-slider").filter(has_text=label)
    if slider.count() != 1:
        labels = interact.locator(".widget-slider .widget-label").all_inner_texts()
        pytest.fail(f"expected one slider {label!r} in the explorer of {LESSON}, found the sliders {labels}")
    return interact, slider.locator(".noUi-handle").first, slider.locator(".widget-readout")


def figure_pixels(interact, path):
    """The figure under the sliders as an ``(H, W, 3)`` uint8 array (a screenshot of the image only).

    The screenshot is also saved to ``path``, to look at when the test fails.
    """
    from PIL import Image

    figure = interact.locator(".widget-output img")
    figure.wait_for(timeout=30_000)
    figure.scroll_into_view_if_needed()
    png = figure.screenshot(path=str(path), animations="disabled", caret="hide")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def wait_for_new_figure(page, interact, old_source, settle_s=2.0, timeout_s=60):
    """Wait until the kernel has redrawn the figure and drawn nothing more for ``settle_s`` seconds.

    Every key press is one change of the slider, so several figures arrive one after the other.
    """
    figure = interact.locator(".widget-output img")
    deadline = time.monotonic() + timeout_s
    source, since = old_source, time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        current = figure.get_attribute("src") if figure.count() == 1 else None
        if current != source:
            source, since = current, time.monotonic()
        elif source not in (None, old_source) and time.monotonic() - since >= settle_s:
            return
    pytest.fail(f"the figure of {LESSON}'s explorer was not redrawn within {timeout_s} s "
                f"of moving the slider {SLIDER!r}")


def test_lesson01_slider_redraws_its_figure_in_jupyterlab(chromium, playwright, jupyter_lab, tmp_path):
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1400, "height": 1000})
    page = context.pages[0] if context.pages else context.new_page()
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    try:
        page.goto(jupyter_lab, timeout=60_000)
        run_all_cells(page)
        fail_on_widget_errors(page, console_errors)
        dismiss_notifications(page)
        interact, handle, readout = find_slider(page, SLIDER, console_errors)
        before = figure_pixels(interact, tmp_path / "figure_before.png")
        source_before = interact.locator(".widget-output img").get_attribute("src")
        value_before = readout.inner_text()

        handle.focus()
        for _ in range(KEY_PRESSES):
            page.keyboard.press("ArrowRight")
        assert readout.inner_text() != value_before, f"the arrow keys did not move the slider {SLIDER!r}"
        wait_for_new_figure(page, interact, source_before)
        wait_for_idle_kernel(page)
        after = figure_pixels(interact, tmp_path / "figure_after.png")
        fail_on_widget_errors(page, console_errors)
    except BaseException:  # pytest.fail too: keep a picture of the page to look at
        page.screenshot(path=str(tmp_path / "page.png"))
        raise
    finally:
        context.close()

    assert before.shape == after.shape, "the figure changed size: expected the same panels, redrawn"
    changed = np.abs(before.astype(int) - after.astype(int)).max(axis=2) > 32
    assert changed.mean() > 0.01, (
        f"moving {SLIDER!r} by {KEY_PRESSES} steps changed only {changed.mean():.2%} of the figure's pixels")
