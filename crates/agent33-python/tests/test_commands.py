"""CommandAgent: the CLI's command agents with their process control, and
Ctrl-C during asyncio.run stopping everything as SIGINT stops the CLI."""

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from agent33_parallel import AgentTask, CommandAgent, ParallelExecutor

from conftest import HANG, process_gone, wait_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_argv_with_placeholders_and_exit_codes():
    agents = {
        "echo": CommandAgent(["sh", "-c", 'printf "%s|%s" "$0" "$1"; echo err >&2; exit $2',
                              "{artifact}", "{id}", "3"]),
        "ok": CommandAgent(["echo", "{artifact}"]),
    }
    r = run(ParallelExecutor(continue_on_error=True, parallel_limit=2).run_all(
        [AgentTask("echo", "a b; $(x)", id="t1"), AgentTask("ok", "hello")], agents=agents))
    f = r.failed[0]
    assert (f.status, f.exit_code, f.output, f.stderr) == ("failed", 3, "a b; $(x)|t1", "err\n")
    s = r.succeeded[0]
    assert (s.output, s.exit_code, s.traceback) == ("hello\n", 0, None)


def test_shell_true_passes_the_artifact_as_dollar_one(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("TODO one\nTODO two\ndone\n")
    r = run(ParallelExecutor().run_all(
        [AgentTask("grep", str(f))], agents={"grep": CommandAgent('grep -c TODO "$1"', shell=True)}))
    assert r.succeeded[0].output == "2\n"


def test_every_placeholder_of_the_cli():
    words = ["{}", "{artifact}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}", "{agent}", "{id}"]
    agent = CommandAgent(["printf", "%s|" * len(words)] + words)
    r = run(ParallelExecutor().run_all(
        [AgentTask("p", "dir/a.tar.gz", id="t")], agents={"p": agent}))
    out = r.succeeded[0].output
    assert out == "dir/a.tar.gz|dir/a.tar.gz|dir/a.tar|a.tar.gz|dir|a.tar|1|1|p|t|"
    # Inserted text is never scanned again: an artifact named {id} stays so.
    r = run(ParallelExecutor().run_all(
        [AgentTask("e", "{id}")], agents={"e": CommandAgent(["echo", "x{artifact}"])}))
    assert r.succeeded[0].output == "x{id}\n"


def test_a_command_without_placeholder_gets_the_artifact_last_as_in_the_cli():
    r = run(ParallelExecutor().run_all(
        [AgentTask("e", "a b.md")], agents={"e": CommandAgent(["echo", "lint"])}))
    assert r.succeeded[0].output == "lint a b.md\n"
    # A shell script gets it as "$1" only.
    r = run(ParallelExecutor().run_all(
        [AgentTask("s", "x.md")],
        agents={"s": CommandAgent('echo "got $1"', shell=True)}))
    assert r.succeeded[0].output == "got x.md\n"


def test_templates_are_refused_with_the_cli_messages():
    cases = [
        ((["echo", "{artifcat}"],), "unknown placeholder {artifcat}: the placeholders are {}, "
         "{artifact}, {.}, {/}, {//}, {/.}, {#}, {%}, {agent} and {id}"),
        (("cat {artifact}",), 'a `shell: true` script gets the artifact as "$1"'),
        ((["sh", "-c", "cat {}; rm x"],), "{} would be pasted into the script that `sh -c` runs"),
        (('echo "x',), 'cannot split command "echo \\"x" into words'),
        (([],), "command is empty"),
        (([""],), "command's program is empty"),
    ]
    for args, message in cases:
        shell = args == ("cat {artifact}",)
        with pytest.raises(ValueError) as e:
            CommandAgent(*args, shell=shell)
        assert str(e.value).startswith(message), (args, str(e.value))
    with pytest.raises(ValueError, match="shell script is empty"):
        CommandAgent("  ", shell=True)
    # Brace text that is no placeholder is kept as written.
    r = run(ParallelExecutor().run_all(
        [AgentTask("awk", "a b")],
        agents={"awk": CommandAgent(["sh", "-c", "echo \"$1\" | awk '{print $2}'", "sh", "{}"])}))
    assert r.succeeded[0].output == "b\n"


def test_bad_command_arguments():
    with pytest.raises(TypeError, match="command"):
        CommandAgent(42)
    with pytest.raises(TypeError, match="command"):
        CommandAgent(["echo", 1])
    with pytest.raises(ValueError, match="command"):
        CommandAgent([])
    with pytest.raises(TypeError, match="shell"):
        CommandAgent(["true"], shell="yes")


def test_timeout_kills_the_process_group_nothing_left(tmp_path):
    pids = tmp_path / "pids"
    script = f'sleep 1000 & echo $! >> {pids}; echo $$ >> {pids}; wait'
    r = run(ParallelExecutor(timeout_seconds=0.5, kill_grace_seconds=1).run_all(
        [AgentTask("sh", "x")], agents={"sh": CommandAgent(script, shell=True)}))
    assert r.failed[0].status == "timeout"
    found = [int(p) for p in pids.read_text().split()]
    assert len(found) == 2
    for pid in found:
        wait_until(lambda: process_gone(pid), f"process {pid} to be gone")


CTRL_C_SCRIPT = textwrap.dedent("""
    import asyncio, itertools, os, sys
    from agent33_parallel import AgentTask, CommandAgent, ParallelExecutor

    pidfile = sys.argv[1]

    async def waiter(task):
        try:
            # Ready once the command has written its pid.
            while not (os.path.exists(pidfile) and open(pidfile).read().endswith("\\n")):
                await asyncio.sleep(0.01)
            print("ready", flush=True)
            await asyncio.Event().wait()
        finally:
            print("finally ran", flush=True)

    async def main():
        executor = ParallelExecutor(parallel_limit=2, timeout_seconds=0, agents={
            "cmd": CommandAgent(f"echo $$ > {pidfile}; exec sleep 1000", shell=True),
            "py": waiter})
        tasks = [AgentTask("cmd", "x"), AgentTask("py", "y")]
        if sys.argv[2] == "endless generator":
            # Streamed, and never ending by itself: Ctrl-C must end it.
            more = (AgentTask("py", f"more{i}") for i in itertools.count())
            tasks = itertools.chain(tasks, more)
        try:
            if sys.argv[2] == "events":
                async for event in executor.run(tasks):
                    pass
            else:
                await executor.run_all(tasks)
        finally:
            print("main finally", flush=True)

    asyncio.run(main())
""")


@pytest.mark.parametrize("way", ["run_all", "events", "endless generator"])
def test_ctrl_c_stops_like_sigint_then_raises_keyboard_interrupt(tmp_path, way):
    script = tmp_path / "main.py"
    script.write_text(CTRL_C_SCRIPT)
    pidfile = tmp_path / "pid"
    child = subprocess.Popen([sys.executable, str(script), str(pidfile), way],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=HANG)
    finally:
        if child.poll() is None:
            child.kill()
    assert "finally ran" in out and "main finally" in out
    assert "KeyboardInterrupt" in err
    assert child.returncode != 0
    pid = int(pidfile.read_text())
    wait_until(lambda: process_gone(pid), f"command process {pid} to be gone")


SECOND_CTRL_C_SCRIPT = textwrap.dedent("""
    import asyncio
    from agent33_parallel import AgentTask, ParallelExecutor

    async def stubborn(task):
        print("ready", flush=True)
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                print("told", flush=True)

    async def main():
        await ParallelExecutor(timeout_seconds=0, kill_grace_seconds=600).run_all(
            [AgentTask("s", "x")], agents={"s": stubborn})

    asyncio.run(main())
""")


def test_a_second_ctrl_c_kills_what_the_first_could_not_stop(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(SECOND_CTRL_C_SCRIPT)
    child = subprocess.Popen([sys.executable, str(script)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        # The coroutine swallows the first stop; the grace is 10 minutes.
        assert child.stdout.readline() == "told\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=HANG)
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in err


def read_pid(path):
    wait_until(lambda: path.exists() and path.read_text().endswith("\n"), f"a pid in {path}")
    return int(path.read_text())


def escape(pidfile):
    """Shell that starts a sleeper in a new session through a subshell that
    exits at once (a double fork) and returns once the sleeper has left the
    task's session: it writes its pid from there, after `setsid`."""
    tmp = f"{pidfile}.tmp"
    return (f"(setsid sh -c 'echo $$ > {tmp}; mv {tmp} {pidfile}; exec sleep 1000' "
            f">/dev/null 2>&1 &); while [ ! -e {pidfile} ]; do :; done")


def test_an_escaped_descendant_is_killed_when_its_task_ends(tmp_path):
    # The background job leaves the task's process group and session
    # (setsid), and its parent exits: a double fork, as daemons do.
    pidfile = tmp_path / "pid"
    script = f"{escape(pidfile)}; exit 0"
    r = run(ParallelExecutor().run_all(
        [AgentTask("sh", "x")], agents={"sh": CommandAgent(script, shell=True)}))
    done = r.succeeded[0]
    assert done.notes == ["1 escaped process killed"]
    pid = read_pid(pidfile)
    wait_until(lambda: process_gone(pid), f"escaped process {pid} to be gone")


def test_an_escaped_descendant_is_killed_after_a_timeout(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"{escape(pidfile)}; exec sleep 1000"
    r = run(ParallelExecutor(timeout_seconds=0.5, kill_grace_seconds=1).run_all(
        [AgentTask("sh", "x")], agents={"sh": CommandAgent(script, shell=True)}))
    timed_out = r.failed[0]
    assert timed_out.status == "timeout"
    assert "1 escaped process killed" in timed_out.notes
    pid = read_pid(pidfile)
    wait_until(lambda: process_gone(pid), f"escaped process {pid} to be gone")


def test_python_subprocess_keeps_its_exit_statuses_while_escapees_are_swept(tmp_path):
    # The sweeps for escapees see Python's own children (and their zombies)
    # as children of this process; they must never reap them, or
    # `subprocess` would read exit status 0 for a child that exited with 7.
    codes = []

    def spawner(task):
        for _ in range(40):
            codes.append(subprocess.run(["sh", "-c", "exit 7"]).returncode)
        # A child that is a zombie while sweeps run, waited for afterwards.
        late = subprocess.Popen(["sh", "-c", "exit 9"])
        wait_until(lambda: process_gone(late.pid), "the late child to exit")
        return late

    pids = tmp_path / "pids"
    escaper = CommandAgent(
        f"(setsid sh -c 'echo $$ >> {pids}; exec sleep 1000' >/dev/null 2>&1 &); exit 0",
        shell=True)
    tasks = [AgentTask("py", "p")] + [AgentTask("esc", f"e{i}") for i in range(30)]
    r = run(ParallelExecutor(parallel_limit=4).run_all(
        tasks, agents={"py": spawner, "esc": escaper}))
    assert len(r.succeeded) == 31, [(t.task.id, t.error) for t in r.failed]
    # An escapee still in the group when its task ended died with the group.
    assert {n for t in r.succeeded for n in t.notes} <= {"1 escaped process killed"}
    for pid in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
        wait_until(lambda: process_gone(pid), f"escaped process {pid} to be gone")
    assert codes == [7] * 40
    late = r.succeeded[0].output
    # The late child's status is still there for Popen to collect.
    assert late.wait(timeout=HANG) == 9
