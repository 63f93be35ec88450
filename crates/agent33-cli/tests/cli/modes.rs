//! PRODUCT.md, Modes: dependency order, skips, parallel mode's warning,
//! dependency-aware starts, and input order at every free slot.

use crate::support::{Sandbox, script_manifest};

#[test]
fn sequential_mode_runs_dependencies_first_otherwise_input_order() {
    let sb = Sandbox::new();
    // Each task appends its name to `order`.
    sb.manifest(&script_manifest(
        "",
        r#"echo "$1" >> order"#,
        &[
            "{agent: t, artifact: c, id: c, depends_on: [b]}",
            "{agent: t, artifact: a, id: a}",
            "{agent: t, artifact: b, id: b, depends_on: [a]}",
            "{agent: t, artifact: d, id: d}",
        ],
    ));
    sb.run(["--report", "r.json"]).output().code_is(0);
    // When a slot frees, the earliest ready task in input order starts.
    assert_eq!(sb.read("order"), "a\nb\nc\nd\n");
    // The report keeps input order.
    assert_eq!(sb.report("r.json").ids("succeeded"), ["c", "a", "b", "d"]);
}

#[test]
fn dependents_of_a_failure_are_skipped_transitively_and_do_not_count_as_failures() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in fail*) exit 3 ;; esac"#,
        &[
            "{agent: t, artifact: fail1, id: f1}",
            "{agent: t, artifact: b, id: b, depends_on: [f1]}",
            "{agent: t, artifact: c, id: c, depends_on: [b]}",
            "{agent: t, artifact: other, id: other}",
            "{agent: t, artifact: fail2, id: f2}",
            "{agent: t, artifact: last, id: last}",
        ],
    ));
    // Two skips would reach max_failures 2 if they counted; they do not.
    sb.run(["--max-failures", "2", "--report", "r.json"])
        .output()
        .code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.ids("skipped"), ["b", "c"]);
    assert_eq!(r.error("b"), "skipped: dependency `f1` did not succeed");
    assert_eq!(r.error("c"), "skipped: dependency `b` did not succeed");
    assert_eq!(r.ids("succeeded"), ["other"]);
    assert_eq!(r.ids("failed"), ["f1", "f2"]);
    assert_eq!(r.ids("cancelled"), ["last"]);
    assert!(!sb.exists("ran.b") && !sb.exists("ran.c"));
    for id in ["b", "c"] {
        crate::support::assert_never_started(r.task(id));
    }
}

#[test]
fn skips_come_before_the_stop_trigger_cancels_the_rest() {
    let sb = Sandbox::new();
    sb.manifest(&script_manifest(
        "",
        r#"case "$1" in fail) exit 3 ;; esac"#,
        &[
            "{agent: t, artifact: fail, id: f}",
            "{agent: t, artifact: other, id: other}",
            "{agent: t, artifact: dep, id: dep, depends_on: [f]}",
        ],
    ));
    sb.run(["--report", "r.json"]).output().code_is(1);
    let r = sb.report("r.json");
    assert_eq!(r.status("dep"), "skipped");
    assert_eq!(r.status("other"), "cancelled");
    assert_eq!(r.error("other"), "not started: fail-fast after f failed");
}

#[test]
fn parallel_mode_ignores_dependencies_with_one_warning() {
    let sb = Sandbox::new();
    // `first` waits for `second`, which depends on it: only a mode that
    // ignores the dependency lets both finish.
    sb.manifest(&script_manifest(
        "",
        r#"[ "$1" != first ] || wait_for ran.second"#,
        &[
            "{agent: t, artifact: first, id: first}",
            "{agent: t, artifact: second, id: second, depends_on: [first]}",
            "{agent: t, artifact: third, id: third, depends_on: [first]}",
        ],
    ));
    let out = sb
        .run(["--parallel", "--timeout", "20", "--report", "r.json"])
        .output();
    out.code_is(0);
    assert_eq!(out.stderr.matches("warning:").count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("depends_on"), "{}", out.stderr);
    assert_eq!(
        sb.report("r.json").ids("succeeded"),
        ["first", "second", "third"]
    );
}

#[test]
fn dependency_aware_mode_starts_a_task_as_soon_as_its_dependencies_succeed() {
    let sb = Sandbox::new();
    // `long` (level 0) runs until `b` (level 1) has started: only per-task
    // readiness, not level by level, lets it finish.
    sb.manifest(&script_manifest(
        "",
        r#"[ "$1" != long ] || wait_for ran.b"#,
        &[
            "{agent: t, artifact: long, id: long}",
            "{agent: t, artifact: a, id: a}",
            "{agent: t, artifact: b, id: b, depends_on: [a]}",
        ],
    ));
    let out = sb
        .run([
            "--respect-dependencies",
            "-j",
            "2",
            "--timeout",
            "20",
            "--report",
            "r.json",
        ])
        .output();
    out.code_is(0);
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let r = sb.report("r.json");
    assert_eq!(r.ids("succeeded"), ["long", "a", "b"]);
    let a_end = r.task("a")["finished_at"]
        .as_str()
        .expect("ended")
        .to_owned();
    let b_start = r.task("b")["started_at"]
        .as_str()
        .expect("started")
        .to_owned();
    assert!(a_end <= b_start, "b started after a succeeded");
}

#[test]
fn respect_dependencies_in_the_manifest_alone_runs_dependency_aware() {
    let sb = Sandbox::new();
    // a, b and c pass their barrier only together; d waits for a.
    sb.manifest(&script_manifest(
        "respect_dependencies: true\nparallel_limit: 3",
        r#"case "$1" in d) ;; *) wait_for ran.a; wait_for ran.b; wait_for ran.c ;; esac"#,
        &[
            "a",
            "b",
            "c",
            "{agent: t, artifact: d, depends_on: [\"t:a\"]}",
        ],
    ));
    let out = sb.run(["--timeout", "10", "--report", "r.json"]).output();
    out.code_is(0);
    assert!(
        out.stderr.contains("Peak concurrent: 3/3"),
        "{}",
        out.stderr
    );
    let r = sb.report("r.json");
    let a_end = r.task("t:a")["finished_at"]
        .as_str()
        .expect("ended")
        .to_owned();
    let d_start = r.task("t:d")["started_at"]
        .as_str()
        .expect("started")
        .to_owned();
    assert!(a_end <= d_start, "d started after a succeeded");
}
