"""The report pages (xaipipe.gallery): opened from file:// in headless Chromium (tests/browser.py).

Synthetic manifests as the thumbnail jobs write them: a 2D study of 120 samples in 2 shards
(3 classes, some misclassified, some without a label, one skipped, two methods with metrics,
real WebP views) and a 3D one (3 views per map). The counts the pages show are checked
against counts computed here from the same data. Screenshots go to the test's folder and,
where XAIPIPE_ARTIFACTS is set, there too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser import chromium, severe_console_errors

from xaipipe.drawing import colorize
from xaipipe.gallery import PAGE_SIZE, confusion_matrix, json_for_script, merge_manifests, write_gallery

CLASSES = ["disk", "none", "square"]
METHODS = ["gradcam", "saliency"]
METRICS = ["deletion", "insertion"]
ODD_ID = "odd/</script><!--x&y\".png"  # must reach the page verbatim, without ending its data block
VIEWS_3D = ["axial", "coronal", "sagittal"]


def _webp(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), colour, np.uint8))


def _samples(n: int, rng: np.random.Generator, report: Path, shard: str, start: int, dims: int, images: bool = True):
    """n synthetic manifest samples (with their view files where ``images``)."""
    samples = []
    nviews = 1 if dims == 2 else 3
    for k in range(n):
        i = start + k
        label = -1 if i % 17 == 5 else i % 3
        skipped = i == 77
        predicted = -1 if skipped else ((i + 1) % 3 if i % 11 == 3 else i % 3)
        sample = {"id": f"{CLASSES[i % 3]}/{CLASSES[i % 3]}_{i:04d}.png", "label": label, "predicted": predicted,
                  "skipped": skipped, "probabilities": None, "image": [], "maps": {}}  # fmt: skip
        samples.append(sample)
        if skipped:
            continue
        p = rng.uniform(0.0, 0.3, 3)
        p[predicted] = rng.uniform(0.4, 0.98)
        sample["probabilities"] = [float(v) for v in p / p.sum()]
        stem = f"thumbs/shard-{shard}/{k:06d}"
        suffixes = [""] if dims == 2 else [f".{v}" for v in VIEWS_3D]
        sample["image"] = [f"{stem}.image{s}.webp" for s in suffixes]
        for m, method in enumerate(METHODS):
            views = [f"{stem}.{method}.{predicted}{s}.webp" for s in suffixes]
            peak = [int(v) for v in rng.integers(0, 32, dims)]
            metrics = {name: float(rng.uniform()) for name in METRICS}
            sample["maps"][method] = [{"class": predicted, "views": views, "peak": peak, "metrics": metrics}]
            if images:
                for v in views:
                    _webp(report / v, (40 + 100 * m, 200 - 100 * m, 60 + nviews * 20))
        if images:
            for v in sample["image"]:
                _webp(report / v, (128, 128, 128))
    return samples


def _manifest(path: Path, samples: list, dims: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"methods": METHODS, "class_names": CLASSES, "spatial_dims": dims,
                                "metrics": METRICS, "samples": samples}))  # fmt: skip
    return path


def _summary(report: Path) -> dict:
    plot = report / "evaluation" / "curves.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(plot), np.full((40, 80, 3), 200, np.uint8))
    rows = [{"method": m, "class": "all", "metric": k, "mean": 0.25 + 0.1 * j, "ci_low": 0.2, "ci_high": 0.3, "n": 119}
            for j, (m, k) in enumerate((m, k) for m in METHODS for k in METRICS)]  # fmt: skip
    return {"title": "Synthetic study", "colormap": "jet", "evaluation_rows": rows, "plots": ["evaluation/curves.png"],
            "agreement_rows": [{"method_a": "gradcam", "method_b": "saliency", "mean_spearman": "0.42", "n": "118"}],
            "config_yaml": "methods: [gradcam, saliency]\ncolormap: jet  # <b>not bold</b>\n",
            "model_path": "models/demo.keras", "model_sha256": "ab" * 32,
            "versions": {"xaipipe": "0.1.0", "keras": "3.x"},
            "warnings": 1}  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 2D report folder with its pages; (folder, samples)."""
    report = tmp_path_factory.mktemp("report2d")
    rng = np.random.default_rng(0)
    shards = [_samples(60, rng, report, f"{s:05d}", 60 * s, 2) for s in range(2)]
    shards[1][-1]["id"] = ODD_ID
    shards[0][0]["maps"]["gradcam"][0]["metrics"]["insertion"] = float("nan")  # none on the page
    shards[0][1]["maps"]["saliency"][0]["peak"] = None  # a blank map: a flat map has no peak
    paths = [_manifest(report / "shards" / f"shard-{s:05d}.json", shard, 2) for s, shard in enumerate(shards)]
    write_gallery(paths, report, _summary(report))
    return report, shards[0] + shards[1]


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def _artifact(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get("XAIPIPE_ARTIFACTS"):
        folder = Path(os.environ["XAIPIPE_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, folder / name)


def _open(driver, page: Path) -> None:
    driver.get(page.as_uri())
    _wait(driver, "return window.galleryReady !== undefined || !document.getElementById('gallery-data')")
    severe_console_errors(driver)  # drop what earlier pages logged


def _wait(driver, script: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.05)


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _rows(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('tr.sample')].map(r => r.dataset.id)")


def _all_rows(driver) -> list[str]:
    """The ids of every page's rows, from page 1 on (the pages left as they were found: on the last)."""
    while driver.execute_script("return !document.getElementById('prev').disabled"):
        driver.find_element("id", "prev").click()
    ids = _rows(driver)
    while driver.execute_script("return !document.getElementById('next').disabled"):
        driver.find_element("id", "next").click()
        ids += _rows(driver)
    return ids


def _count(driver) -> str:
    return driver.find_element("id", "count").text


def _images_loaded(driver, selector: str) -> list[int]:
    """The naturalWidth of each image that ``selector`` finds, once all of them finished loading."""
    _wait(driver, f"return [...document.querySelectorAll({selector!r})].every(i => i.complete)")
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(i => i.naturalWidth)")


def _misclassified(samples) -> set[str]:
    return {s["id"] for s in samples if s["label"] >= 0 and not s["skipped"] and s["label"] != s["predicted"]}


def test_gallery_pages_rows_and_images(study, browser, tmp_path):
    report, samples = study
    _open(browser, report / "index.html")
    assert _count(browser) == f"{len(samples)} samples"
    ids = _rows(browser)
    assert len(ids) == PAGE_SIZE == 50
    assert ids == sorted(s["id"] for s in samples)[:50]  # sorted by id at first
    shown = [s for s in samples if s["id"] in ids]
    widths = _images_loaded(browser, "img.map")
    assert len(widths) == sum(not s["skipped"] for s in shown) * len(METHODS) and all(w > 0 for w in widths)
    image_widths = _images_loaded(browser, "img.image-view")
    assert len(image_widths) == sum(not s["skipped"] for s in shown) and all(w > 0 for w in image_widths)
    assert browser.find_element("id", "page").text == "page 1 of 3"
    _artifact(browser, tmp_path, "gallery-2d.png")
    rest = _all_rows(browser)
    assert [len(_rows(browser)), browser.find_element("id", "page").text] == [20, "page 3 of 3"]
    assert sorted(rest) == sorted(s["id"] for s in samples) and len(set(rest)) == 120
    assert ODD_ID in rest  # the id that contains "</script>" and "<!--" is shown as it is
    assert severe_console_errors(browser) == []


def test_skipped_sample_is_shown_greyed(study, browser):
    report, samples = study
    _open(browser, report / "index.html")
    (skipped,) = [s for s in samples if s["skipped"]]
    _all_rows(browser)
    _select(browser, "filter-label", str(skipped["label"]))
    ids = _all_rows(browser)
    assert skipped["id"] in ids
    row = browser.find_element("css selector", f'tr.sample[data-id="{skipped["id"]}"]')
    assert row.get_attribute("class") == "sample skipped" and row.get_attribute("data-correct") == "false"
    assert float(row.value_of_css_property("opacity")) < 1
    assert row.find_elements("css selector", "img") == []


def test_filters_match_the_data(study, browser):
    report, samples = study
    _open(browser, report / "index.html")
    _select(browser, "filter-correct", "misclassified")
    wrong = _misclassified(samples)
    assert 5 <= len(wrong) < 20
    assert _count(browser) == f"{len(wrong)} samples"
    assert set(_all_rows(browser)) == wrong
    marks = browser.execute_script("return [...document.querySelectorAll('tr.sample')].map(r => r.dataset.correct)")
    assert set(marks) == {"false"}
    _select(browser, "filter-correct", "correct")
    correct = {s["id"] for s in samples if s["label"] >= 0 and not s["skipped"] and s["label"] == s["predicted"]}
    assert _count(browser) == f"{len(correct)} samples" and set(_all_rows(browser)) == correct
    _select(browser, "filter-correct", "all")
    _select(browser, "filter-class", "2")
    assert _count(browser) == f"{sum(s['predicted'] == 2 for s in samples)} samples"
    _select(browser, "filter-class", "all")
    _select(browser, "filter-label", "-1")
    unknown = {s["id"] for s in samples if s["label"] == -1}
    assert len(unknown) == 7 and set(_all_rows(browser)) == unknown
    assert severe_console_errors(browser) == []


def test_sorting(study, browser):
    report, samples = study
    _open(browser, report / "index.html")
    scored = [s for s in samples if not s["skipped"]]
    _select(browser, "sort", "confidence")
    least = min(scored, key=lambda s: s["probabilities"][s["predicted"]])
    assert _rows(browser)[0] == least["id"]
    _select(browser, "order", "desc")
    most = max(scored, key=lambda s: s["probabilities"][s["predicted"]])
    assert _rows(browser)[0] == most["id"]
    _select(browser, "order", "asc")
    _select(browser, "sort", "metric:deletion")  # of the first shown method: gradcam, then saliency alone
    assert _rows(browser)[0] == min(scored, key=lambda s: s["maps"]["gradcam"][0]["metrics"]["deletion"])["id"]
    _select(browser, "filter-method", "saliency")
    assert _rows(browser)[0] == min(scored, key=lambda s: s["maps"]["saliency"][0]["metrics"]["deletion"])["id"]
    assert _all_rows(browser)[-1] == next(s["id"] for s in samples if s["skipped"])  # no value: last
    _select(browser, "filter-method", "all")
    _select(browser, "sort", "metric:insertion")
    _select(browser, "order", "desc")  # no value (a skipped sample, a NaN): last in either order
    ids = _all_rows(browser)
    finite = [s for s in scored if np.isfinite(s["maps"]["gradcam"][0]["metrics"]["insertion"])]
    assert ids[0] == max(finite, key=lambda s: s["maps"]["gradcam"][0]["metrics"]["insertion"])["id"]
    assert ids[-2:] == [samples[0]["id"], next(s["id"] for s in samples if s["skipped"])]


def test_sorting_by_a_metric_with_every_class_explained_reads_the_predicted_classs_map(tmp_path, browser):
    # targets: all gives each sample one map per class; the sort read the first (class 0's) map
    rng = np.random.default_rng(3)
    samples = [s for s in _samples(12, rng, tmp_path, "00000", 0, 2) if not s["skipped"]]
    for k, sample in enumerate(samples):
        for method in METHODS:
            (only,) = sample["maps"][method]
            maps = []
            for c in range(3):  # class 0's value falls with k, the other classes' rise: opposite orders
                value = 1.0 - k / 12 if c == 0 else (k + 1 + c) / 20
                maps.append({**only, "class": c, "metrics": {**only["metrics"], "deletion": value}})
            sample["maps"][method] = maps
    write_gallery([_manifest(tmp_path / "shards/shard-00000.json", samples, 2)], tmp_path, _summary(tmp_path))
    _open(browser, tmp_path / "index.html")
    _select(browser, "sort", "metric:deletion")
    by_predicted = sorted(samples, key=lambda s: s["maps"]["gradcam"][s["predicted"]]["metrics"]["deletion"])
    assert _all_rows(browser) == [s["id"] for s in by_predicted]
    assert by_predicted != sorted(samples, key=lambda s: s["maps"]["gradcam"][0]["metrics"]["deletion"])


def test_method_filter_hides_the_other_column(study, browser):
    report, _ = study
    _open(browser, report / "index.html")
    count = "return document.querySelectorAll(arguments[0]).length"
    assert browser.execute_script(count, "img.map[data-method=saliency]") > 0
    _select(browser, "filter-method", "gradcam")
    rows = browser.execute_script(count, "tr.sample:not(.skipped)")
    assert browser.execute_script(count, "img.map[data-method=saliency]") == 0
    assert browser.execute_script(count, "img.map[data-method=gradcam]") == rows
    heads = browser.execute_script("return [...document.querySelectorAll('#gallery thead th')].map(t => t.textContent)")
    assert "gradcam" in heads and "saliency" not in heads


def test_clicking_a_map_enlarges_it(study, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    report, samples = study
    _open(browser, report / "index.html")
    modal = browser.find_element("id", "modal")
    assert not modal.is_displayed()
    img = browser.find_elements("css selector", "img.map[data-method=saliency]")[2]
    row_id = browser.execute_script("return arguments[0].closest('tr').dataset.id", img)
    (sample,) = [s for s in samples if s["id"] == row_id]
    entry = sample["maps"]["saliency"][0]
    assert img.get_attribute("data-class") == str(entry["class"])
    img.click()
    assert modal.is_displayed()
    big = browser.find_elements("css selector", "#modal-views img")
    assert [b.get_attribute("src") for b in big] == [(report / v).as_uri() for v in entry["views"]]
    assert _images_loaded(browser, "#modal-colormap") == [256]
    text = modal.text
    assert f"saliency, class {CLASSES[entry['class']]}" in text and row_id in text
    # the peak's axes named: a volume's (z, y, x) was read as a viewer's (i, j, k), the reverse
    assert f"peak at map pixel (row, column) [{entry['peak'][0]}, {entry['peak'][1]}]" in text
    assert [s.text for s in browser.find_elements("css selector", "#modal .scale span")] == ["0", "1"]
    assert f"{entry['metrics']['deletion']:.4f}" in text and f"{entry['metrics']['insertion']:.4f}" in text
    _artifact(browser, tmp_path, "gallery-2d-modal.png")
    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert not modal.is_displayed()
    img.click()
    assert modal.is_displayed()
    modal.click()
    assert not modal.is_displayed()
    # a blank map's overlay is the image alone: the enlarged view says why, where nothing did
    blank = samples[1]
    assert blank["maps"]["saliency"][0]["peak"] is None
    browser.find_element("css selector", f'tr[data-id="{blank["id"]}"] img.map[data-method=saliency]').click()
    assert "saliency, class" in modal.text and "a blank map: no relevance anywhere" in modal.text
    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert severe_console_errors(browser) == []


def test_summary_page(study, browser, tmp_path):
    report, samples = study
    _open(browser, report / "summary.html")
    expected = np.zeros((3, 3), int)
    for s in samples:
        if s["label"] >= 0 and not s["skipped"]:
            expected[s["label"], s["predicted"]] += 1
    shown = np.zeros((3, 3), int)
    for cell in browser.find_elements("css selector", "#confusion td"):
        shown[int(cell.get_attribute("data-label")), int(cell.get_attribute("data-predicted"))] = int(cell.text)
    assert (shown == expected).all() and expected.sum() == 120 - 7 - 1
    heads = [t.text for t in browser.find_elements("css selector", "#confusion thead th")][1:]
    assert heads == CLASSES
    evaluation = browser.find_elements("css selector", "#evaluation tbody tr")
    assert [r.text.split()[:3] for r in evaluation] == [[m, "all", k] for m in METHODS for k in METRICS]
    assert evaluation[1].text.split()[3] == "0.3500"
    agreement = browser.find_element("css selector", "#agreement tbody tr").text.split()
    assert agreement == ["gradcam", "saliency", "0.4200", "118"]
    assert browser.find_element("id", "config").text == "methods: [gradcam, saliency]\ncolormap: jet  # <b>not bold</b>"
    assert browser.find_element("id", "model-sha256").text == "ab" * 32
    assert _images_loaded(browser, "img.plot") == [80]
    assert browser.find_element("id", "gallery-link").get_attribute("href") == (report / "index.html").as_uri()
    # a warning (a resized mask) is no failure: the line said "1 failures" where nothing was skipped
    assert "; 1 warning (failures.tsv)" in browser.find_element("id", "totals").text
    _artifact(browser, tmp_path, "summary.png")
    assert severe_console_errors(browser) == []
    browser.find_element("id", "gallery-link").click()
    _wait(browser, "return window.galleryReady !== undefined")
    browser.find_element("id", "summary-link").click()
    assert browser.current_url == (report / "summary.html").as_uri()


def test_gallery_of_volumes(tmp_path, browser):
    report = tmp_path / "report3d"
    samples = _samples(6, np.random.default_rng(1), report, "00000", 0, 3)
    write_gallery([_manifest(report / "shards" / "shard-00000.json", samples, 3)], report, _summary(report))
    _open(browser, report / "index.html")
    assert _count(browser) == "6 samples" and len(_rows(browser)) == 6
    widths = _images_loaded(browser, "img.map")
    assert len(widths) == 6 * len(METHODS) * 3 and all(w > 0 for w in widths)
    views = browser.execute_script("return [...document.querySelectorAll('img.map')].map(i => i.dataset.view)")
    assert views == VIEWS_3D * 6 * len(METHODS)
    images = browser.execute_script("return [...document.querySelectorAll('img.image-view')].map(i => i.dataset.view)")
    assert images == VIEWS_3D * 6
    browser.find_elements("css selector", "img.map[data-view=coronal]")[0].click()
    big = browser.find_elements("css selector", "#modal-views img")
    assert [b.get_attribute("data-view") for b in big] == VIEWS_3D
    _artifact(browser, tmp_path, "gallery-3d-modal.png")
    assert severe_console_errors(browser) == []


def test_pages_files_and_colour_scale(study):
    report, samples = study
    files = sorted(p.name for p in report.iterdir() if p.is_file())
    assert files == ["colormap-signed.png", "colormap.png", "index.html", "summary.html"]
    scale = cv2.cvtColor(cv2.imread(str(report / "colormap.png")), cv2.COLOR_BGR2RGB)
    assert scale.shape == (16, 256, 3)
    ends = colorize(np.array([[0.0, 1.0]]), "jet")[0]
    assert (scale[8, 0] == ends[0]).all() and (scale[8, 255] == ends[1]).all()
    # signed maps' scale, -1 to 1: pure blue, white in the middle (bwr at 0 is 1, 1, 1), pure red
    signed = cv2.cvtColor(cv2.imread(str(report / "colormap-signed.png")), cv2.COLOR_BGR2RGB)
    assert signed[8, 0].tolist() == [0, 0, 255] and signed[8, 255].tolist() == [255, 0, 0]
    assert min(signed[8, 127].tolist() + signed[8, 128].tolist()) >= 253
    page = (report / "index.html").read_text()
    assert page.count("</script>") == 2 and "<script src" not in page and "fetch(" not in page
    assert "<link" not in page and "http://" not in page and "https://" not in page
    data = page.split('<script type="application/json" id="gallery-data">')[1].split("</script>")[0]
    inlined = json.loads(data)["samples"]
    assert inlined[0]["maps"]["gradcam"][0]["metrics"]["insertion"] is None
    inlined[0]["maps"]["gradcam"][0]["metrics"]["insertion"] = samples[0]["maps"]["gradcam"][0]["metrics"]["insertion"]
    assert json.dumps(inlined) == json.dumps(merge_manifests(sorted((report / "shards").glob("*.json")))["samples"])
    assert json.loads(json_for_script({"a": "</script><!--"})) == {"a": "</script><!--"}
    assert json.loads(json_for_script({"a": [float("nan"), 1.5, float("inf")]})) == {"a": [None, 1.5, None]}


def test_shards_must_agree_on_classes(tmp_path):
    a = _manifest(tmp_path / "a.json", [], 2)
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"class_names": ["x", "y"], "samples": []}))
    with pytest.raises(ValueError, match="class names"):
        write_gallery([a, b], tmp_path / "out", _summary(tmp_path / "out"))
    assert not (tmp_path / "out" / "index.html").exists()


def test_unknown_class_names_are_the_output_indices_on_the_summary_page(tmp_path):
    # integer labels without config `classes`: the predictions file holds no class names (an empty list), and the
    # summary page said "0 of 0 labelled samples classified correctly" over an empty confusion matrix
    samples = [{"id": f"s{k}", "label": label, "predicted": predicted, "probabilities": [0.2, 0.3, 0.5],
                "image": [], "maps": {}}
               for k, (label, predicted) in enumerate([(0, 0), (0, 2), (1, 1), (2, 2), (2, 2)])]  # fmt: skip
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"methods": [], "class_names": [], "spatial_dims": 2, "samples": samples}))
    data = merge_manifests([path])
    assert data["class_names"] == ["0", "1", "2"]
    assert confusion_matrix(data).tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 2]]  # counted by hand
    write_gallery([path], tmp_path / "out", _summary(tmp_path / "out"))
    assert "4 of 5" in (tmp_path / "out" / "summary.html").read_text()


def test_open_time_of_10000_samples(tmp_path, browser):
    """A recorded figure, not a timed assertion: the time to the first rows (window.galleryReady)."""
    report = tmp_path / "report10k"
    samples = _samples(10_000, np.random.default_rng(2), report, "00000", 0, 2, images=False)
    for s in sorted(samples, key=lambda s: s["id"])[:PAGE_SIZE]:  # the first page's views exist
        for v in s["image"] + [v for e in s["maps"].values() for v in e[0]["views"]]:
            _webp(report / v, (90, 90, 90))
    write_gallery([_manifest(report / "shards" / "shard-00000.json", samples, 2)], report, _summary(report))
    _open(browser, report / "index.html")
    ready = browser.execute_script("return window.galleryReady")
    size = (report / "index.html").stat().st_size
    print(f"\n10,000 samples: first rows after {ready:.0f} ms; index.html {size / 1e6:.2f} MB")
    assert _count(browser) == "10000 samples" and len(_rows(browser)) == PAGE_SIZE
    assert all(w > 0 for w in _images_loaded(browser, "img.map"))
    assert severe_console_errors(browser) == []
