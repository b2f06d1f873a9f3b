"""The generate stage: picking, prompts, the answer cache, answer checks, and both teachers
(a loopback chat-completions server that misbehaves on purpose; a tiny random local model)."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from instar.console import StageError
from instar.params.base import BaseModelParams
from instar.params.checks import check_all
from instar.params.generate import GenerateParams, SamplingParams
from instar.params.ingest import IngestParams
from instar.params.sources import SourceParams
from instar.records.paths import quarantine_path, raw_path
from instar.records.schema import load_meta
from stages.generate import (
    OUTPUT,
    AnswerError,
    Paragraph,
    build_prompts,
    cache_key,
    check_answer,
    generate,
    parse_answer,
    pick,
    task_slots,
)
from stages.ingest import ingest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = [
    json.loads(line)["text"]
    for line in (ROOT / "data/sources/paragraphs.jsonl").read_text("utf-8").splitlines()
]
MARK = re.compile(r"\[\[P(\d\d)\]\]")


# --- a chat-completions server on loopback that fails as told -------------------------------


class Teacher(ThreadingHTTPServer):
    """Answers POST /v1/chat/completions. `script[n]` lists what the successive requests
    for paragraph n get: ok, 429, 500, slow (longer than the client's timeout), badbody (a
    response that is not JSON), badanswer (content that is not a JSON object), toolong (a 400
    about the prompt), pinned (a 400 about the model); after the list, `then` (ok unless
    told)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.script: dict[int, list[str]] = {}
        self.then: dict[int, str] = {}
        self.attempts: Counter = Counter()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth: set[str | None] = set()
        self.slow_s = 1.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reset(self):
        self.attempts.clear()
        self.calls = self.max_in_flight = 0


class Handler(BaseHTTPRequestHandler):
    server: Teacher

    def log_message(self, *args):  # keep pytest output clean
        pass

    left = True  # nothing to count out until do_POST has counted this request in

    def _leave(self):
        """A request stops being in flight before its reply goes out: counted after, the
        client may already have its reply and have sent the next request, which would then
        look like one request too many at once."""
        if not self.left:
            self.left = True
            with self.server.lock:
                self.server.in_flight -= 1

    def _send(self, code: int, body: bytes, headers: dict | None = None):
        self._leave()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def do_POST(self):
        s = self.server
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = int(MARK.search(req["messages"][-1]["content"]).group(1))
        self.left = False
        with s.lock:
            s.calls += 1
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)
            attempt = s.attempts[n]
            s.attempts[n] += 1
            s.auth.add(self.headers.get("Authorization"))
            plan = s.script.get(n, [])
            action = plan[attempt] if attempt < len(plan) else s.then.get(n, "ok")
        try:
            time.sleep(0.05)  # long enough for requests to overlap
            if action == "429":
                self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0"})
            elif action == "500":
                self._send(500, b'{"error": "internal"}')
            elif action == "slow":
                # The client gives up at its timeout (0.5 s) and may send again; what the
                # server goes on doing for a request nobody waits for is not "in flight".
                # It stays counted for half that wait, so a client that sends past its
                # limit meanwhile is still seen, and leaves well before 0.5 s, where a
                # loaded machine's late thread would count it beside the client's retry.
                time.sleep(0.25)
                self._leave()
                time.sleep(0.15 + s.slow_s)
                self._send(200, completion(n))
            elif action == "toolong":  # a 400 about this prompt alone
                self._send(400, b'{"detail": "the prompt is longer than the context"}')
            elif action == "pinned":  # what `transformers serve <path>` says to another model
                msg = f"Server is pinned to '/models/t'; requested '{req['model']}'."
                self._send(400, json.dumps({"detail": msg}).encode())
            elif action == "badbody":
                self._send(200, b'{"choices": [{"message": ')
            elif action == "badanswer":
                self._send(200, completion(n, content="حسنًا، إليك الإجابة: {instruction"))
            else:
                self._send(200, completion(n))
        finally:
            self._leave()


def completion(n: int, content: str | None = None) -> bytes:
    answer = {
        "instruction": f"اشرح الفكرة الرئيسية في الفقرة رقم {n}.",
        "input": "",
        "output": f"تتناول الفقرة رقم {n} موضوعًا واحدًا، وهذه خلاصة قصيرة لفكرتها الرئيسية.",
    }
    text = content if content is not None else "```json\n" + json.dumps(answer) + "\n```"
    body = {
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
    }
    return json.dumps(body, ensure_ascii=False).encode()


@pytest.fixture
def server():
    s = Teacher()
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


# --- a workspace with params, templates and marked paragraphs -------------------------------


def workspace(tmp: Path, n: int = 12, **generate) -> GenerateParams:
    shutil.copytree(ROOT / "templates/generate", tmp / "templates/generate")
    rows = [{"doc_id": f"d{i:02d}", "text": f"[[P{i:02d}]] {SAMPLE[i]}"} for i in range(n)]
    (tmp / "paras.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8"
    )
    gen = {
        "text_sources": ["paras"],
        "paragraphs": n,
        "quotas": {"summarization": 1, "open_qa": 1, "rewrite": 1},
        "backend": "openai",
        "model": "teacher-test",
        "shipped_cache": None,
        "cache": "cache/answers.jsonl",
        "openai": {
            "concurrency": 3,
            "max_retries": 3,
            "timeout_s": 0.5,
            "backoff_s": 0.01,
            "max_backoff_s": 0.05,
        },
        "sampling": {"max_tokens": 64},
        **generate,
    }
    params = {
        "text_sources": {
            "paras": {
                "kind": "text",
                "format": "jsonl",
                "path": "paras.jsonl",
                "id_column": "doc_id",
            }
        },
        "generate": gen,
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")
    return GenerateParams.load(params)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def quarantined() -> list[dict]:
    return pq.read_table(quarantine_path("generate")).to_pylist()


def with_url(params: GenerateParams, url: str) -> GenerateParams:
    return params.model_copy(update={"openai": params.openai.model_copy(update={"base_url": url})})


# --- the openai backend ---------------------------------------------------------------------


def test_retries_concurrency_quarantine_and_a_rerun_asks_only_for_what_is_missing(tmp_path, server):
    params = with_url(workspace(tmp_path), server.url)
    server.script = {
        0: ["429", "429", "ok"],
        1: ["500", "ok"],
        2: ["slow", "ok"],
        3: ["badbody", "ok"],
        4: ["badanswer", "ok"],
        5: ["500", "500", "500", "500"],  # one more than max_retries allows: a final failure
    }
    m = generate(params)

    assert server.max_in_flight <= 3 and server.max_in_flight > 1
    assert server.attempts[0] == 3 and server.attempts[1] == 2 and server.attempts[5] == 4
    assert m["retries"] == 2 + 1 + 1 + 1 + 1 + 3
    assert m["teacher_calls"] == server.calls == 12 + m["retries"]
    assert set(m["failed_attempts"]) == {
        "http_429",
        "http_500",
        "timeout",
        "malformed_response",
        "unparseable_answer",
    }
    assert m["prompts_asked"] == 12 and m["cache_hits"] == 0
    assert m["records"] == 11 and m["failures"] == 1
    assert m["tokens_in"] > 0 and m["tokens_out"] > 0
    [bad] = quarantined()
    assert bad["rule"] == "http_500" and "[[P05]]" in bad["input"]
    assert load_meta(bad["meta"])["paragraph_id"] == "d05"
    records = pq.read_table(OUTPUT).to_pylist()
    assert {r["origin"] for r in records} == {"synthetic"}
    meta = load_meta(records[0]["meta"])
    assert meta["teacher_model"] == "teacher-test" and meta["prompt_id"].startswith("v1/")
    assert len(Path("cache/answers.jsonl").read_text().splitlines()) == 1 + 11  # + header

    # Rerun: the failed prompt only; the server is well again.
    server.reset()
    server.script = {}
    m = generate(params)
    assert server.calls == 1 and dict(server.attempts) == {5: 1}
    assert m["cache_hits"] == 11 and m["prompts_asked"] == 1 and m["records"] == 12
    assert quarantined() == []

    # And once everything is cached: no call at all.
    server.reset()
    m = generate(params)
    assert server.calls == 0 and m["teacher_calls"] == 0 and m["cache_hit_rate"] == 1.0


def test_each_answer_is_cached_as_it_arrives_so_a_crash_loses_nothing(tmp_path, server):
    params = with_url(workspace(tmp_path), server.url)
    # A teacher that starts refusing the key half-way stops the run with a clear error...
    orig = Handler.do_POST

    def do_post(self):
        with self.server.lock:
            done = self.server.calls
        if done >= 6:
            self.rfile.read(int(self.headers["Content-Length"]))
            return self._send(401, b'{"error": "bad key"}')
        return orig(self)

    Handler.do_POST = do_post
    try:
        with pytest.raises(StageError, match="HTTP 401"):
            generate(params)
    finally:
        Handler.do_POST = orig
    kept = len(Path("cache/answers.jsonl").read_text().splitlines()) - 1  # the header
    assert 1 <= kept <= 6
    # ...and the rerun asks only for the rest.
    server.reset()
    m = generate(params)
    assert m["prompts_asked"] == 12 - kept and m["cache_hits"] == kept and m["records"] == 12


def test_a_400_about_the_prompt_is_quarantined_and_one_about_the_model_stops_the_run(
    tmp_path, server
):
    params = with_url(workspace(tmp_path, n=3), server.url)
    server.script = {1: ["toolong"]}
    m = generate(params)
    assert server.attempts[1] == 1 and m["records"] == 2  # not retried, and the run goes on
    assert [r["rule"] for r in quarantined()] == ["http_400"]
    server.reset()
    server.script = {1: ["pinned"]}
    with pytest.raises(StageError, match="HTTP 400 for model 'teacher-test'.*pinned"):
        generate(params)


def test_the_api_key_comes_from_the_named_variable_only(tmp_path, server, monkeypatch):
    params = with_url(workspace(tmp_path, n=3), server.url)
    params = params.model_copy(
        update={"openai": params.openai.model_copy(update={"api_key_env": "INSTAR_TEST_KEY"})}
    )
    monkeypatch.delenv("INSTAR_TEST_KEY", raising=False)
    with pytest.raises(StageError, match="INSTAR_TEST_KEY"):
        generate(params)
    monkeypatch.setenv("INSTAR_TEST_KEY", "s3cret")
    generate(params)
    assert server.auth == {"Bearer s3cret"}


def test_a_torn_last_cache_line_costs_that_answer_only(tmp_path, server):
    params = with_url(workspace(tmp_path, n=4), server.url)
    generate(params)
    cache = Path("cache/answers.jsonl")
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # killed mid-write
    server.reset()
    m = generate(params)
    assert server.calls == 1 and m["torn_cache_lines"] == 1 and m["records"] == 4


# --- offline: the cache alone ---------------------------------------------------------------


def test_a_miss_without_a_teacher_says_how_many_and_how_to_configure_one(tmp_path, server):
    params = with_url(workspace(tmp_path, n=6), server.url)
    generate(params.model_copy(update={"paragraphs": 4}))  # 4 answers cached, by openai
    offline = params.model_copy(update={"offline": True})
    with pytest.raises(StageError) as e:
        generate(offline)
    assert "2 of 6 prompts have no answer" in str(e.value)
    assert "generate.backend: openai" in str(e.value) and "base_url" in str(e.value)
    authors = params.model_copy(update={"backend": "authors"})
    with pytest.raises(StageError, match="6 of 6 prompts .* 'authors'"):
        generate(authors)


def test_the_shipped_cache_answers_the_default_profile_in_full(monkeypatch):
    monkeypatch.chdir(ROOT)
    params = GenerateParams.load()
    prompts = build_prompts(params, Counter())
    shipped = {
        json.loads(line)["key"]: json.loads(line)
        for line in Path(params.shipped_cache).read_text("utf-8").splitlines()
    }
    assert [p.key for p in prompts] == list(shipped)
    for p in prompts:
        ans = parse_answer(shipped[p.key]["answer"])
        assert check_answer(ans, p.paragraph) is None, p.prompt_id
    assert set(Counter(p.task for p in prompts).values()) == {7}


def test_generate_params_name_known_tasks_and_text_sources():
    params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    params["generate"]["quotas"]["poetry"] = 1
    params["generate"]["text_sources"] = ["nowhere"]
    problems = "\n".join(check_all(params))
    assert "generate.quotas names tasks that `tasks` lacks: ['poetry']" in problems
    assert "generate.text_sources names unknown text sources: ['nowhere']" in problems


# --- picking, prompts, keys -----------------------------------------------------------------


def para(i: int, text: str | None = None) -> Paragraph:
    import hashlib

    text = text or f"فقرة رقم {i} " + "كلمة " * 40
    return Paragraph("s", i, str(i), text, hashlib.sha256(text.encode()).hexdigest())


def test_picks_are_a_bounded_seeded_sample_that_stays_as_the_source_grows():
    stream = [para(i) for i in range(500)]
    a = pick(iter(stream), 20, 0, 30, 800, Counter())
    assert len(a) == 20 and a == pick(iter(stream[::-1]), 20, 0, 30, 800, Counter())
    assert a != pick(iter(stream), 20, 1, 30, 800, Counter())
    more = pick(iter(stream), 30, 0, 30, 800, Counter())
    assert set(p.sha for p in a) < set(p.sha for p in more)  # a larger n only adds picks
    grown = pick(iter(stream + [para(i) for i in range(500, 520)]), 20, 0, 30, 800, Counter())
    old = {p.sha for p in a}
    assert all(p.sha in old or p.row >= 500 for p in grown)  # only newcomers can displace
    counts = Counter()
    pick(iter([para(1), para(1), para(2, "قصيرة جدًا")]), 5, 0, 30, 800, counts)
    assert counts == {"duplicate": 1, "out_of_length": 1}


def test_task_slots_follow_the_quotas_interleave_and_only_grow():
    quotas = {"summarization": 2, "open_qa": 1, "rewrite": 1}
    slots = task_slots(quotas, 8)
    assert Counter(slots) == {"summarization": 4, "open_qa": 2, "rewrite": 2}
    assert len(set(slots[:4])) == 3
    assert task_slots(quotas, 13)[:8] == slots
    assert max(Counter(task_slots({"a": 1, "b": 1, "c": 1}, 7)).values()) == 3


def test_raising_paragraphs_only_adds_prompts(tmp_path, server):
    params = with_url(workspace(tmp_path, n=12), server.url)
    first = generate(params.model_copy(update={"paragraphs": 8}))
    server.reset()
    more = generate(params)
    assert first["prompts_asked"] == 8
    assert more["cache_hits"] == 8 and more["prompts_asked"] == server.calls == 4


def test_the_cache_key_changes_with_each_of_its_parts():
    msgs = [{"role": "user", "content": "لخّص"}]
    s = SamplingParams()
    base = cache_key("openai", "m", "v1", msgs, s)
    assert base == cache_key("openai", "m", "v1", [dict(m) for m in msgs], SamplingParams())
    others = {
        cache_key("transformers", "m", "v1", msgs, s),
        cache_key("openai", "m2", "v1", msgs, s),
        cache_key("openai", "m", "v2", msgs, s),
        cache_key("openai", "m", "v1", [{"role": "user", "content": "اشرح"}], s),
        cache_key("openai", "m", "v1", msgs, SamplingParams(temperature=0.2)),
    }
    assert base not in others and len(others) == 5


# --- parsing and checking answers -----------------------------------------------------------

ANSWER = {"instruction": "اشرح الفكرة.", "input": "", "output": "هذه إجابة عربية قصيرة وواضحة."}


def test_parse_takes_fenced_or_wrapped_json_and_refuses_the_rest():
    raw = json.dumps(ANSWER, ensure_ascii=False)
    assert parse_answer(f"```json\n{raw}\n```") == ANSWER
    assert parse_answer(f"إليك الإجابة:\n{raw}\nأتمنى أن تفيد.") == ANSWER
    no_input = {k: v for k, v in ANSWER.items() if k != "input"}
    assert parse_answer(json.dumps(no_input))["input"] == ""
    for bad in ("ليس JSON", "[1, 2]", json.dumps({"instruction": "اشرح"}), '{"output": "'):
        with pytest.raises(AnswerError):
            parse_answer(bad)


def test_checks_catch_empty_non_arabic_and_copied_answers():
    p = para(1, SAMPLE[0])
    assert check_answer(ANSWER, p) is None
    assert check_answer({**ANSWER, "output": ""}, p)[0] == "empty_output"
    assert check_answer({**ANSWER, "output": "This answer is in English."}, p)[0] == "not_arabic"
    copied = {**ANSWER, "output": SAMPLE[0].replace("،", ",")}
    assert check_answer(copied, p)[0] == "copy_of_paragraph"


# --- into the pipeline: ingest keeps origin and meta ----------------------------------------


def test_ingest_takes_the_generated_records_with_their_origin_and_meta(tmp_path, server):
    generate(with_url(workspace(tmp_path, n=3), server.url))
    src = SourceParams(kind="records", format="parquet", path=str(OUTPUT))
    counts = ingest("synthetic", src, IngestParams())
    assert counts["records"] == 3
    rows = pq.read_table(raw_path("synthetic")).to_pylist()
    assert {r["origin"] for r in rows} == {"synthetic"} and {r["source"] for r in rows} == {
        "synthetic"
    }
    meta = load_meta(rows[0]["meta"])
    assert meta["teacher_model"] == "teacher-test" and meta["group"].startswith("paras:")
    assert meta["from_source"] == "paras"


# --- the transformers backend ---------------------------------------------------------------


def tiny_model(folder: Path) -> Path:
    from instar.modeling.build import build_model, build_tokenizer
    from instar.modeling.chat import TEMPLATES

    base = BaseModelParams(
        kind="config",
        architecture="llama",
        chat_template="llama3",
        vocab_size=300,
        config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
        },
    )
    import instar.modeling.chat

    instar.modeling.chat.TEMPLATES = ROOT / TEMPLATES
    try:
        tok = build_tokenizer(SAMPLE[:10], base.vocab_size, base.chat_template)
    finally:
        instar.modeling.chat.TEMPLATES = TEMPLATES
    build_model(base, tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_transformers_backend_batches_and_quarantines_unparseable_answers(tmp_path, monkeypatch):
    import transformers

    folder = tiny_model(tmp_path / "tiny")
    params = workspace(
        tmp_path,
        n=5,
        backend="transformers",
        model=str(folder),
        transformers={"batch_size": 2},
        sampling={"max_tokens": 6, "temperature": 0.0},
    )
    batches = []
    orig = transformers.GenerationMixin.generate

    def counting(self, *a, **kw):
        batches.append((kw["input_ids"].shape[0], kw["attention_mask"][:, -1].tolist()))
        return orig(self, *a, **kw)

    monkeypatch.setattr(transformers.GenerationMixin, "generate", counting)
    m = generate(params)
    assert [b for b, _ in batches] == [2, 2, 1]
    assert all(set(last) == {1} for _, last in batches)  # left padding: every row ends real
    assert m["teacher_calls"] == 5 and m["tokens_out"] > 0 and m["tokens_in"] > 0
    assert m["records"] == 0 and m["failures_by_rule"] == {"unparseable_answer": 5}
    rows = quarantined()
    assert len(rows) == 5 and all(load_meta(r["meta"])["prompt_id"] for r in rows)
    assert Path("cache/answers.jsonl").read_text().count("\n") == 1  # the header only


def test_profile_check_names_a_missing_teacher_key(monkeypatch):
    from scripts.profiles import missing

    params = yaml.safe_load((ROOT / "params.yaml").read_text("utf-8"))
    params["generate"].update(backend="openai", model="m")
    params["generate"]["openai"]["api_key_env"] = "INSTAR_TEST_KEY"
    monkeypatch.delenv("INSTAR_TEST_KEY", raising=False)
    assert "generate.openai.api_key_env: INSTAR_TEST_KEY is not set" in missing(params)
    monkeypatch.setenv("INSTAR_TEST_KEY", "k")
    assert missing(params) == []
