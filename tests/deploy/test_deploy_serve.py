"""``deepres serve`` as a user runs it: a real server process on a free localhost port,
real HTTP requests with real CIFAR images, and the page driven by headless Chromium."""

import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from deepres import create_model
from deepres.checkpoints import save_weights
from deepres.data import dataset_stats
from deepres.inference import Predictor

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def checkpoint(cifar_small, tmp_path_factory) -> Path:
    mean, std = dataset_stats(str(cifar_small))
    meta = {
        "model": "resnet20",
        "model_args": {},
        "classes": sorted(p.name for p in (cifar_small / "train").iterdir()),
        "mean": list(mean),
        "std": list(std),
        "input_size": 32,
        "data": str(cifar_small),
    }
    path = tmp_path_factory.mktemp("serve") / "best.safetensors"
    save_weights(path, create_model("resnet20").eval(), meta)
    return path


@pytest.fixture(scope="module")
def server(checkpoint, one_thread_env):
    """``deepres serve --port 0``: the base URL it prints; stopped after the module."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deepres", "serve", "--checkpoint", str(checkpoint), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=one_thread_env,
    )
    try:
        line = first_line_starting(process, "serving", STARTUP_SECONDS)
        assert line.startswith("serving resnet20 (10 classes) on http://127.0.0.1:"), line
        yield line.split(" on ", 1)[1].split()[0].rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def first_line_starting(process: subprocess.Popen, prefix: str, timeout: float) -> str:
    """The first line of the process's output that starts with ``prefix``. A reader thread
    takes the lines (``readline`` blocks), so a process that hangs without printing fails here
    after ``timeout`` seconds instead of hanging the suite; one that exits first fails too."""
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the process closed it or exited

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise AssertionError(
                f"no line starting {prefix!r} within {timeout} s; it printed: {''.join(seen)}"
            ) from None
        if line is None:
            raise AssertionError(f"the process ended before printing {prefix!r}: {''.join(seen)}")
        seen.append(line)
        if line.startswith(prefix):
            return line


def test_a_server_that_hangs_without_printing_fails_in_bounded_time():
    silent = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],  # waits, prints nothing
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with pytest.raises(AssertionError, match="no line starting 'serving' within 1 s"):
            first_line_starting(silent, "serving", 1)
        assert silent.wait(timeout=60) == -signal.SIGKILL  # killed by the start-up timeout
    finally:
        silent.kill()
        silent.wait()
    talker = subprocess.Popen(
        [sys.executable, "-c", "print('loading'); print('serving x on http://h:1/')"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first_line_starting(talker, "serving", 120) == "serving x on http://h:1/\n"
    talker.wait(timeout=60)
    quitter = subprocess.Popen(
        [sys.executable, "-c", "print('oops')"], stdout=subprocess.PIPE, text=True
    )
    with pytest.raises(AssertionError, match="ended before printing 'serving': oops"):
        first_line_starting(quitter, "serving", 120)
    quitter.wait(timeout=60)


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post_file(url: str, data: bytes, filename: str, field: str = "image") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return post(url, body, f"multipart/form-data; boundary={boundary}")


@pytest.fixture(scope="module")
def cat_image(cifar_small) -> Path:
    return sorted((cifar_small / "test" / "cat").iterdir())[0]


def test_predict_answers_a_real_image_as_the_predictor_does(server, checkpoint, cat_image):
    status, answer = post_file(server + "/predict", cat_image.read_bytes(), cat_image.name)
    assert status == 200, answer
    expected = Predictor(checkpoint).predict_file(cat_image, top_k=5).top
    assert [item["class"] for item in answer["top"]] == [c for c, _ in expected]
    for item, (_, prob) in zip(answer["top"], expected, strict=True):
        assert item["probability"] == pytest.approx(prob, abs=1e-5)
    assert answer["ms"] > 0
    status, raw = post(server + "/predict", cat_image.read_bytes(), "image/jpeg")  # raw body
    assert status == 200 and raw["top"] == answer["top"]


def test_bad_and_oversized_uploads_are_refused_and_the_server_keeps_serving(server, cat_image):
    status, answer = post_file(server + "/predict", b"just some text\n" * 10, "notes.txt")
    assert status == 400
    assert answer["error"].startswith("notes.txt is not an image: send a JPEG, PNG")
    status, answer = post_file(server + "/predict", b"\xff" * (11 * 2**20), "huge.jpg")
    assert status == 413
    assert "upload too large: the limit is 10 MB" in answer["error"]
    status, answer = post_file(server + "/predict", cat_image.read_bytes(), "c.jpg", "file")
    assert status == 400 and "multipart field 'image'" in answer["error"]
    status, answer = post_file(server + "/predict", cat_image.read_bytes(), cat_image.name)
    assert status == 200 and len(answer["top"]) == 5


def test_page_is_self_contained(server):
    with urllib.request.urlopen(server + "/", timeout=60) as response:
        html = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'type="file"' in html and 'id="top5"' in html
    assert "http://" not in html and "https://" not in html  # no CDN
    with urllib.request.urlopen(server + "/info", timeout=60) as response:
        info = json.loads(response.read())
    assert info["model"] == "resnet20" and len(info["classes"]) == 10


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver)",
)
def test_browser_uploads_an_image_and_sees_the_top5_chart(server, cat_image, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=900,640")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "resnet20" in d.find_element(By.ID, "model").text)
        image = tmp_path / "cat.jpg"
        shutil.copy(cat_image, image)
        driver.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#top5 li")) == 5)
        rows = driver.find_elements(By.CSS_SELECTOR, "#top5 li")
        names = [row.find_element(By.CLASS_NAME, "name").text for row in rows]
        _, answer = post_file(server + "/predict", cat_image.read_bytes(), cat_image.name)
        assert names == [item["class"] for item in answer["top"]]
        widths = [
            row.find_element(By.CLASS_NAME, "fill").value_of_css_property("width") for row in rows
        ]
        assert float(widths[0].rstrip("px")) >= float(widths[-1].rstrip("px"))
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "time"), "ms"))
        assert not driver.find_element(By.ID, "error").is_displayed()
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        driver.quit()
