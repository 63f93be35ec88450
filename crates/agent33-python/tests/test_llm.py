"""LlmAgent and Provider against the test kit's fake OpenAI-compatible
server (`agent33-fake-llm`): deferred 429s, usage, cost, and a key that
never shows."""

import asyncio
import json
import os
import subprocess
import threading

import pytest

from agent33_parallel import AgentTask, LlmAgent, ParallelExecutor, Provider

from conftest import HANG, built_binary, cli_binary, wait_until

KEY = "sk-test-f4k3-s3cr3t-k3y"


def fake_llm_binary():
    """The test kit's `agent33-fake-llm`: $AGENT33_FAKE_LLM, else the
    workspace's build."""
    return built_binary("agent33-fake-llm", "AGENT33_FAKE_LLM",
                        "cargo build -p agent33-testkit --bins")


class FakeServer:
    """The fake server as a child process; its request records (printed
    with --log once answered) are collected as they come."""

    def __init__(self, *flags, env=None):
        self.proc = subprocess.Popen(
            [fake_llm_binary(), "--log", *flags],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["listening"], first
        self.base_url = first[1]
        self.records = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            record = json.loads(line)
            with self._lock:
                self.records.append(record)

    def answered(self):
        with self._lock:
            return list(self.records)

    def close(self):
        self.proc.kill()
        self.proc.wait(timeout=HANG)
        self._reader.join(timeout=HANG)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("AGENT33_TEST_LLM_KEY", KEY)
    return "AGENT33_TEST_LLM_KEY"


@pytest.fixture
def capped_server(key_env):
    # Two requests at once: more get a 429 with retry-after(-ms).
    server = FakeServer(
        "--concurrency", "2", "--latency-ms", "20", "--completion-tokens", "7",
        "--api-key-env", key_env, env=dict(os.environ),
    )
    yield server
    server.close()


def run(tasks, agents, **settings):
    executor = ParallelExecutor(**settings)
    return asyncio.run(executor.run_all(tasks, agents=agents))


def test_tasks_under_a_small_server_cap_all_succeed_with_429s_deferred(capped_server, key_env, tmp_path):
    n = 12
    for i in range(n):
        (tmp_path / f"doc{i}.md").write_text(f"document {i}\n")
    price = {"prompt_per_mtok": 1000.0, "completion_per_mtok": 2000.0}
    provider = Provider(
        capped_server.base_url,
        api_key_env=key_env,
        max_concurrency=8,
        prices={"fake-model": price},
        name="fake",
    )
    refine = LlmAgent(provider, model="fake-model", prompt="Improve:\n\n{content}", max_tokens=50)
    tasks = [AgentTask("refine", str(tmp_path / f"doc{i}.md")) for i in range(n)]
    results = run(tasks, {"refine": refine}, parallel_limit=8, retries=0)

    assert len(results.succeeded) == n, [(r.task.id, r.error) for r in results.failed]
    # A deferral is not an attempt: with retries=0 every task still succeeded.
    assert all(r.attempts == 1 for r in results.succeeded)

    wait_until(
        lambda: sum(r["status"] == 200 for r in capped_server.answered()) >= n,
        "the server's records of every answered request",
    )
    records = capped_server.answered()
    statuses = [r["status"] for r in records]
    assert statuses.count(200) == n
    assert statuses.count(429) >= 1, statuses
    assert set(statuses) <= {200, 429}, statuses
    assert all(r["in_flight"] < 2 for r in records if r["status"] == 200)

    # Usage is the server's, summed; the cost is the price times it.
    served = [r for r in records if r["status"] == 200]
    prompt = sum(r["prompt_tokens"] for r in served)
    completion = sum(r["completion_tokens"] for r in served)
    usages = [r.usage for r in results.succeeded]
    assert all(u is not None and u["completion_tokens"] == 7 for u in usages)
    assert sum(u["prompt_tokens"] for u in usages) == prompt
    assert sum(u["completion_tokens"] for u in usages) == completion
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in usages)
    for r in results.succeeded:
        expected = (r.usage["prompt_tokens"] * 1000.0 + r.usage["completion_tokens"] * 2000.0) / 1e6
        assert r.cost_usd == pytest.approx(expected)
        assert isinstance(r.output, str) and r.output

    # The report carries usage and cost as the CLI's does; the key never shows.
    report = results.to_json()
    assert KEY not in report
    doc = json.loads(report)
    reported = {t["task"]["id"]: t for t in doc["succeeded"]}
    for r in results.succeeded:
        assert reported[r.task.id]["usage"] == r.usage
        assert reported[r.task.id]["cost_usd"] == pytest.approx(r.cost_usd)
    for shown in (repr(provider), str(provider), repr(refine), str(refine), repr(results)):
        assert KEY not in shown
    assert key_env in repr(provider)


def test_one_limiter_per_provider_is_shared_by_its_agents(capped_server, key_env, tmp_path):
    # Two agents on one provider and model share its limiter: together they
    # learn the server's cap of 2 and every task succeeds without retries.
    for i in range(8):
        (tmp_path / f"d{i}.md").write_text("x\n")
    provider = Provider(capped_server.base_url, api_key_env=key_env, max_concurrency=6)
    a = LlmAgent(provider, model="m", prompt="A {artifact}")
    b = LlmAgent(provider, model="m", prompt="B {content}", system="be brief")
    tasks = [AgentTask("a" if i % 2 else "b", str(tmp_path / f"d{i}.md")) for i in range(8)]
    results = run(tasks, {"a": a, "b": b}, parallel_limit=8, retries=0)
    assert len(results.succeeded) == 8, [(r.task.id, r.error) for r in results.failed]
    assert all(r.cost_usd is None for r in results.succeeded)
    assert all(r.usage is not None for r in results.succeeded)


def test_an_unset_key_variable_is_a_value_error_naming_it(monkeypatch):
    monkeypatch.delenv("AGENT33_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match=r"\$AGENT33_TEST_UNSET_KEY, which is not set"):
        Provider("http://127.0.0.1:9/v1", api_key_env="AGENT33_TEST_UNSET_KEY", name="openai")


def test_a_prompt_without_the_artifact_is_a_value_error():
    provider = Provider("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match=r"uses neither \{content\} nor \{artifact\}"):
        LlmAgent(provider, model="m", prompt="Say hello")


def test_provider_settings_are_checked_by_the_rust_rules(key_env):
    with pytest.raises(ValueError, match="max_concurrency of provider `p` must be at least 1"):
        Provider("http://127.0.0.1:9/v1", max_concurrency=0, name="p")
    with pytest.raises(ValueError, match="rpm of provider `p` must be a positive number"):
        Provider("http://127.0.0.1:9/v1", rpm=-1, name="p")
    with pytest.raises(ValueError, match="unknown field `prompt_per_token`"):
        Provider("http://127.0.0.1:9/v1", prices={"m": {"prompt_per_token": 1.0}})
    with pytest.raises(ValueError, match="empty base_url"):
        Provider("  ", name="p")
    assert Provider("http://127.0.0.1:9/v1").name == "127.0.0.1:9"


def test_a_failed_request_names_the_provider_message_not_the_key(key_env, tmp_path):
    # The server wants another key: a 401 fails the task at once, and the
    # key sent is in no message.
    env = dict(os.environ, AGENT33_TEST_SERVER_KEY="the-server-key")
    server = FakeServer("--api-key-env", "AGENT33_TEST_SERVER_KEY", env=env)
    try:
        (tmp_path / "a.md").write_text("a\n")
        provider = Provider(server.base_url, api_key_env=key_env)
        agent = LlmAgent(provider, model="m", prompt="{content}")
        results = run([AgentTask("llm", str(tmp_path / "a.md"))], {"llm": agent}, retries=2)
    finally:
        server.close()
    [failed] = results.failed
    assert failed.attempts == 1
    assert failed.error and KEY not in failed.error
    assert KEY not in results.to_json()


def test_metrics_carry_the_clis_llm_counters_for_each_run(capped_server, key_env, tmp_path):
    """results.metrics and to_json() have the CLI's llm_* counters, the
    cost among them, and the limiter wait timer; a Provider kept across
    runs gives each run its own counts. The second run's tasks are
    streamed from a generator."""
    for i in range(10):
        (tmp_path / f"doc{i}.md").write_text(f"document {i}\n")
    price = {"prompt_per_mtok": 1000.0, "completion_per_mtok": 2000.0}
    provider = Provider(capped_server.base_url, api_key_env=key_env, max_concurrency=8,
                        prices={"fake-model": price}, name="fake")
    refine = LlmAgent(provider, model="fake-model", prompt="Improve:\n\n{content}")

    async def plain(task):
        return None

    agents = {"refine": refine, "plain": plain}
    seen = 0
    for docs in (range(6), range(6, 10)):
        tasks = [AgentTask("refine", str(tmp_path / f"doc{i}.md")) for i in docs]
        given = tasks + [AgentTask("plain", "x")]
        results = run(given if docs[0] == 0 else iter(given), agents, parallel_limit=8)
        assert len(results.succeeded) == len(tasks) + 1
        counters = results.metrics["counters"]
        wait_until(lambda: len(capped_server.answered()) >= seen + counters["llm_requests"],
                   "the server's records of this run's requests")
        records = capped_server.answered()[seen:]
        seen += len(records)
        served = [r for r in records if r["status"] == 200]
        assert len(served) == len(tasks)
        assert counters["llm_requests"] == len(records)
        assert counters["llm_rate_limited"] == sum(r["status"] == 429 for r in records)
        assert counters["llm_prompt_tokens"] == sum(r["prompt_tokens"] for r in served)
        assert counters["llm_completion_tokens"] == sum(r["completion_tokens"] for r in served)
        assert counters["llm_cost_usd"] == pytest.approx(
            sum(r.cost_usd for r in results.succeeded if r.cost_usd is not None))
        assert isinstance(counters["llm_cost_usd"], float)
        # One wait a request sent, this run's only.
        assert results.metrics["timers"]["rate_limit_wait_ms"]["count"] == len(records)
        assert json.loads(results.to_json())["metrics"] == results.metrics

    # Unpriced: no cost, as in the CLI; no LLM task: no llm_* at all.
    unpriced = LlmAgent(Provider(capped_server.base_url, api_key_env=key_env), model="m",
                        prompt="{content}")
    results = run([AgentTask("u", str(tmp_path / "doc0.md"))], {"u": unpriced})
    assert results.metrics["counters"]["llm_requests"] >= 1
    assert "llm_cost_usd" not in results.metrics["counters"]
    for given in ([AgentTask("plain", "x")], iter([AgentTask("plain", "x")])):
        results = run(given, agents)
        assert not [k for k in results.metrics["counters"] if k.startswith("llm_")]
        assert "rate_limit_wait_ms" not in results.metrics["timers"]


def test_the_llm_metrics_have_the_keys_of_the_clis(capped_server, key_env, tmp_path):
    cli = cli_binary()
    (tmp_path / "doc.md").write_text("document\n")
    (tmp_path / "agent33.yaml").write_text(f"""\
execution: {{ mode: parallel, parallel_limit: 4 }}
providers:
  fake:
    base_url: {capped_server.base_url}
    api_key_env: {key_env}
    prices: {{ fake-model: {{ prompt_per_mtok: 1.0, completion_per_mtok: 2.0 }} }}
agents:
  refine:
    llm:
      provider: fake
      model: fake-model
      prompt: "Improve:\\n\\n{{content}}"
tasks:
  - agent: refine
    artifacts: [doc.md]
""")
    out = subprocess.run([cli, "run", "--report", "cli.json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr
    expected = json.loads((tmp_path / "cli.json").read_text())["metrics"]
    provider = Provider(capped_server.base_url, api_key_env=key_env, name="fake",
                        prices={"fake-model": {"prompt_per_mtok": 1.0, "completion_per_mtok": 2.0}})
    refine = LlmAgent(provider, model="fake-model", prompt="Improve:\n\n{content}")
    results = run([AgentTask("refine", str(tmp_path / "doc.md"))], {"refine": refine},
                  parallel_limit=4)
    for part in ("counters", "gauges", "timers"):
        assert set(results.metrics[part]) == set(expected[part]), part
    assert set(json.loads(results.to_json())["metrics"]["counters"]) == set(expected["counters"])
