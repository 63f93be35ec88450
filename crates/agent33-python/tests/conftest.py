"""Shared helpers for the package's tests.

Bounds here are hang detectors only: every wait is for a condition.
"""

import os
import pathlib
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]

# A generous upper bound for anything that should end quickly.
HANG = 60.0


def built_binary(name, variable, build):
    """A binary of the workspace: $`variable`, else the newest build under
    the target folder. Under CI=true a missing binary fails the test
    instead of skipping it; `build` says how to make it."""
    candidates = [os.environ.get(variable)]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    candidates += [os.path.join(target, p, name) for p in ("debug", "release")]
    found = [c for c in candidates if c and os.access(c, os.X_OK)]
    if found:
        return max(found, key=os.path.getmtime)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} not built (run `{build}`)")
    pytest.skip(f"{name} not built")


def cli_binary():
    """The `agent-33` binary: $AGENT33_BIN, else the workspace's build."""
    return built_binary("agent-33", "AGENT33_BIN", "cargo build -p agent33-cli")


def process_gone(pid):
    """Whether `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until(condition, what):
    """Polls `condition` until it holds; fails after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true nothing may be skipped: a skip is reported as a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"
