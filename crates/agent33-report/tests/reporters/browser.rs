//! The timings page in a real browser: headless Chromium opens it from a
//! `file://` URL, and its DOM must say it drew one bar per attempt, with no
//! script error and nothing logged to the console.
//!
//! Without Chromium the tests say so loudly and pass as skipped — except
//! under `CI=true`, where a missing browser is a failure: CI must install
//! it (Debian: `apt-get install chromium`). `AGENT33_CHROMIUM` names the
//! browser binary when it is not on `PATH` as `chromium`,
//! `chromium-browser`, `google-chrome` or `google-chrome-stable`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent33_parallel::Event;

use crate::fixtures::{MALICIOUS, eventful_run, large_run, repeated_artifacts};
use crate::timings::{blob, page};

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AGENT33_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find_map(on_path)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The browser, or `None` (after a loud notice) when the test should skip.
fn require_chromium(test: &str) -> Option<PathBuf> {
    match chromium() {
        Some(p) => Some(p),
        None if in_ci() => panic!(
            "{test}: Chromium is required when CI=true but was not found \
             (install the `chromium` package or set AGENT33_CHROMIUM)"
        ),
        None => {
            // Straight to stderr, not eprintln!: the test harness captures
            // the macros' output of passing tests, and this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n**********************************************************************\n\
                 SKIPPED {test}: Chromium not found (apt-get install chromium,\n\
                 or set AGENT33_CHROMIUM). The timings page was NOT checked in a browser.\n\
                 **********************************************************************"
            );
            None
        }
    }
}

/// What headless Chromium made of the page: its DOM after the load, and
/// what it logged.
struct Rendered {
    dom: String,
    log: String,
    took: Duration,
}

fn render(chrome: &Path, html: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Console messages go to stderr, where the test looks for them.
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chrome.display()));
    // Read both pipes on threads so a full pipe never stalls the browser.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    // A hang detector, not a performance bound: the page renders in well
    // under a second.
    let deadline = started + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let dom = out.join().unwrap().unwrap();
    let log = err.join().unwrap().unwrap();
    assert!(status.success(), "chromium failed ({status}):\n{log}");
    Rendered { dom, log, took }
}

/// The value of `name` on the `<body>` element, unescaped. (Attribute
/// values never hold a raw `"` or `>`, whichever Chromium serialised them:
/// newer ones also escape `<` and `>`.)
fn body_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let key = format!(" {name}=\"");
    let at = start + dom[start..].find(&key)? + key.len();
    let value = &dom[at..at + dom[at..].find('"')?];
    Some(
        value
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&"),
    )
}

/// Writes the page of `events`, renders it and checks what every page must
/// show; returns the render.
fn check(test: &str, events: &[Event]) -> Option<Rendered> {
    check_html(test, &page(events))
}

/// Like [`check`], for a page already written.
fn check_html(test: &str, html: &str) -> Option<Rendered> {
    let chrome = require_chromium(test)?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timings.html");
    std::fs::write(&path, html).unwrap();
    let data = blob(html);
    let attempts = data["attempts"].as_array().unwrap().len();
    let tasks = data["tasks"].as_array().unwrap().len();

    let r = render(&chrome, &path);
    let attr = |name| body_attr(&r.dom, name);
    assert_eq!(
        attr("data-js-errors").as_deref(),
        Some("0"),
        "script errors:\n{}",
        r.log
    );
    assert_eq!(
        attr("data-ready").as_deref(),
        Some("1"),
        "the page did not finish rendering:\n{}",
        r.log
    );
    assert_eq!(
        attr("data-bars"),
        Some(attempts.to_string()),
        "one bar per attempt"
    );
    assert_eq!(attr("data-tasks"), Some(tasks.to_string()));
    let console: Vec<&str> = r.log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "the page logged to the console:\n{}",
        console.join("\n")
    );
    // The table shows its first page of tasks.
    let rows = r.dom.matches("<tr").count() - 1; // less the header row
    assert_eq!(rows, tasks.min(50));
    Some(r)
}

#[test]
fn timings_page_renders_one_bar_per_attempt_in_chromium() {
    let Some(r) = check(
        "timings_page_renders_one_bar_per_attempt_in_chromium",
        &eventful_run(MALICIOUS),
    ) else {
        return;
    };
    assert_eq!(body_attr(&r.dom, "data-bars").as_deref(), Some("6"));
    // The malicious name reached the page as text, never as an element.
    assert!(!r.dom.contains("<img"), "markup was injected");
    assert!(
        r.dom
            .contains("&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "the name is shown as text in the table"
    );
}

#[test]
fn timings_page_of_10000_tasks_renders_in_chromium() {
    let events = large_run(10_000, 8);
    let Some(r) = check("timings_page_of_10000_tasks_renders_in_chromium", &events) else {
        return;
    };
    let ms = body_attr(&r.dom, "data-render-ms").unwrap_or_default();
    eprintln!(
        "10,000 tasks: the page's script took {ms} ms; chromium ran {} ms in all",
        r.took.as_millis()
    );
}

/// Drives the page like a user (sort, filter, page, zoom, hover, click) from
/// a script appended after the page's own, and records what it saw in
/// `data-check-*` attributes.
const INTERACTIONS: &str = r#"<script>
(function () {
  var b = document.body, $ = function (id) { return document.getElementById(id); };
  function firstCell(col) { return document.querySelector('#tbody tr').children[col].textContent; }
  // Sort by duration (longest first), then by id (A to Z).
  var headers = document.querySelectorAll('#thead-row th button');
  headers[6].click();
  b.dataset.checkSort = firstCell(1) + '|' + document.querySelectorAll('#thead-row th')[6].getAttribute('aria-sort');
  headers[1].click();
  b.dataset.checkSortId = firstCell(1);
  // Filter.
  var f = $('filter');
  f.value = 'c.md';
  f.dispatchEvent(new Event('input'));
  b.dataset.checkFilter = document.querySelectorAll('#tbody tr').length + '|' + firstCell(1);
  f.value = '';
  f.dispatchEvent(new Event('input'));
  // Zoom in on the middle, then reset.
  $('zoom-in').click();
  b.dataset.checkZoom = b.dataset.bars;
  $('zoom-reset').click();
  b.dataset.checkReset = b.dataset.bars;
  // Hover the first bar of slot 0 (lanes are 40 px under a 24 px axis,
  // after a 64 px gutter: see the page's geometry), then click it.
  var over = $('gantt-over'), r = over.getBoundingClientRect();
  var at = { clientX: r.left + 64 + 3, clientY: r.top + 24 + 20, bubbles: true };
  over.dispatchEvent(new MouseEvent('mousemove', at));
  b.dataset.checkHover = ($('tip').hidden ? 'hidden' : 'shown') + '|' + $('tip').querySelector('.tt').textContent;
  over.dispatchEvent(new MouseEvent('mousedown', at));
  over.dispatchEvent(new MouseEvent('mouseup', at));
  b.dataset.checkSelect = location.hash + '|' + document.querySelectorAll('#tbody tr.sel').length;
})();
</script>
</body>"#;

#[test]
fn timings_page_responds_to_sorting_filtering_zoom_and_hover() {
    let test = "timings_page_responds_to_sorting_filtering_zoom_and_hover";
    let Some(chrome) = require_chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timings.html");
    let html = page(&eventful_run(MALICIOUS)).replace("</body>", INTERACTIONS);
    std::fs::write(&path, html).unwrap();
    let r = render(&chrome, &path);
    let attr = |name| body_attr(&r.dom, name).unwrap_or_default();
    assert_eq!(attr("data-js-errors"), "0", "{}", r.log);
    // lint:b.md ran from 0 to 2.05 s, the longest.
    assert_eq!(attr("data-check-sort"), "lint:b.md|descending");
    // The malicious id sorts first ('<' before 'l'), as text.
    assert_eq!(attr("data-check-sort-id"), format!("lint:{MALICIOUS}"));
    assert_eq!(attr("data-check-filter"), "1|lint:c.md");
    let zoomed: usize = attr("data-check-zoom").parse().unwrap();
    assert!(zoomed < 6, "zooming in hides bars out of view ({zoomed})");
    assert_eq!(attr("data-check-reset"), "6");
    assert_eq!(attr("data-check-hover"), format!("shown|lint:{MALICIOUS}"));
    assert_eq!(attr("data-check-select"), "#task=0|1");
}

/// Records every text the page draws on its canvases in `data-check-texts`
/// (one per line): placed before the page's own scripts, it wraps
/// `fillText` before any is drawn.
const RECORD_CANVAS_TEXT: &str = r#"<body data-js-errors="0"><script>
(function () {
  var seen = [], fill = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text) {
    seen.push(String(text));
    document.body.dataset.checkTexts = seen.join('\n');
    return fill.apply(this, arguments);
  };
})();
</script>"#;

#[test]
fn timings_bars_are_named_by_id_without_the_agent() {
    let test = "timings_bars_are_named_by_id_without_the_agent";
    let Some(chrome) = require_chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timings.html");
    let html = page(&repeated_artifacts());
    assert_eq!(html.matches(r#"<body data-js-errors="0">"#).count(), 1);
    std::fs::write(
        &path,
        html.replace(r#"<body data-js-errors="0">"#, RECORD_CANVAS_TEXT),
    )
    .unwrap();
    let r = render(&chrome, &path);
    assert_eq!(
        body_attr(&r.dom, "data-js-errors").as_deref(),
        Some("0"),
        "{}",
        r.log
    );
    let texts = body_attr(&r.dom, "data-check-texts").unwrap_or_default();
    let texts: Vec<&str> = texts.lines().collect();
    for label in ["x", "x#2", "x#3", "check-x"] {
        assert!(
            texts.contains(&label),
            "no bar labelled {label:?} in {texts:?}"
        );
    }
}

#[test]
fn timings_page_of_a_run_on_workers_renders_its_lane_groups_in_chromium() {
    let test = "timings_page_of_a_run_on_workers_renders_its_lane_groups_in_chromium";
    let Some(r) = check(test, &crate::timeline::run_on_workers()) else {
        return;
    };
    assert_eq!(body_attr(&r.dom, "data-bars").as_deref(), Some("4"));
}

#[test]
fn a_page_with_deferrals_renders_them_without_errors() {
    use crate::fixtures::{Outcome, RunBuilder};
    let mut run = RunBuilder::start(Some(2), 2);
    run.queue(0, "refine", "a.md");
    run.queue(1, "refine", "b.md");
    run.start_task(0, 0, 0, 0);
    run.start_task(1, 1, 0, 0);
    run.defer(0, 0, 40, 1);
    run.defer(1, 1, 45, 1);
    run.start_task(0, 0, 600, 0);
    run.start_task(1, 1, 620, 0);
    run.finish_task(0, 0, 900, Outcome::success());
    run.finish_task(1, 1, 950, Outcome::success());
    let events = run.finish(950, 2, 0.6, None);
    let Some(r) = check("a_page_with_deferrals_renders_them_without_errors", &events) else {
        return;
    };
    assert!(
        r.dom.contains("deferred (rate limited)"),
        "the legend names them"
    );
}

#[test]
fn a_page_with_a_provider_limit_draws_it_without_errors() {
    let html = crate::timings::page_with_a_provider_limit();
    let Some(r) = check_html(
        "a_page_with_a_provider_limit_draws_it_without_errors",
        &html,
    ) else {
        return;
    };
    assert_eq!(body_attr(&r.dom, "data-limits").as_deref(), Some("1"));
    assert!(r.dom.contains("openai limit"), "the legend names it");
}
