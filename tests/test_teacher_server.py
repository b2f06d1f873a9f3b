"""`generate` against a real OpenAI-compatible server: `transformers serve` on loopback, serving
a tiny model overfitted on a few answers, some of them JSON the stage takes and some not."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from instar import teacher
from instar.params.base import BaseModelParams
from instar.params.generate import GenerateParams, OpenAIParams, SamplingParams
from instar.records.schema import load_meta
from stages.generate import build_prompts
from tests.conftest import ROOT, dvc, env, fresh_clone, stages_run

pytestmark = pytest.mark.slow

MAX_TOKENS = 48  # the JSON answers below fit; the long one is cut short by the server


def answer(instruction: str, output: str) -> str:
    obj = {"instruction": instruction, "input": "", "output": output}
    return json.dumps(obj, ensure_ascii=False)


# What the teacher learns to say for the n-th prompt of the stage, and what should become of it.
ANSWERS = [
    (answer("لخّص الفقرة في جملتين.", "تتحدث الفقرة عن موضوع علمي مهم."), "record"),
    ("عذرًا، لا أستطيع كتابة الإجابة الآن.", "unparseable_answer"),  # prose, no JSON
    (answer("ما الفكرة الرئيسية في النص؟", "الفكرة الرئيسية هي أثر العلم في المجتمع."), "record"),
    (  # longer than MAX_TOKENS: the server stops mid-string (finish_reason "length")
        answer(
            "اكتب سؤالًا عن الفقرة.",
            "تعرض الفقرة تاريخ المدينة منذ تأسيسها، ثم تصف أسواقها القديمة وحرفها وطرق "
            "التجارة التي مرت بها، وتذكر العلماء الذين درسوا فيها والكتب التي ألفوها، "
            "وتختم بأثر ذلك كله في حياة سكانها اليوم وفي صورتها عند زوارها.",
        ),
        "unparseable_answer",
    ),
    (answer("Summarize the paragraph.", "The paragraph is about science."), "not_arabic"),
    (answer("اشرح سبب ازدهار الحضارة.", "ازدهرت بسبب الترجمة وطلب العلم."), "record"),
]
MAX_RETRIES = 2
CHAT_OK = re.compile(r'"POST /v1/chat/completions HTTP/1\.1" 200')  # uvicorn's access log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_params(repo: Path, model: str, base_url: str) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text("utf-8"))
    params["generate"].update(
        paragraphs=len(ANSWERS),
        quotas={"summarization": 1, "open_qa": 1},
        backend="openai",
        model=model,
        openai={
            "base_url": base_url,
            "api_key_env": None,
            "concurrency": 2,
            "max_retries": MAX_RETRIES,
            "timeout_s": 60,
            "backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "json_mode": False,  # transformers serve ignores response_format
        },
        sampling={"temperature": 0.0, "top_p": 1.0, "max_tokens": MAX_TOKENS, "seed": 0},
    )
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), "utf-8")


def overfit(prompts: list[list[dict]], answers: list[str], folder: Path) -> None:
    """A tiny Llama (with the project's own tokenizer and chat template) trained until greedy
    decoding of each prompt, exactly as the server renders it, gives back its answer."""
    import torch

    import instar.modeling.chat
    from instar.modeling.build import build_model, build_tokenizer

    texts = [m["content"] for msgs in prompts for m in msgs] + answers
    templates = instar.modeling.chat.TEMPLATES
    instar.modeling.chat.TEMPLATES = ROOT / templates
    try:
        tok = build_tokenizer(texts, 2000, "llama3")
    finally:
        instar.modeling.chat.TEMPLATES = templates
    base = BaseModelParams(
        kind="config",
        architecture="llama",
        chat_template="llama3",
        config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
        },
    )
    model = build_model(base, tok)
    chat = {"add_generation_prompt": True, "tokenize": True, "return_dict": False}
    pairs = [
        (
            tok.apply_chat_template(msgs, **chat),
            tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
        )
        for msgs, a in zip(prompts, answers, strict=True)
    ]
    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), tok.pad_token_id)
    labels = torch.full((len(pairs), width), -100)  # loss on the answers only
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, a) in enumerate(pairs):
        ids[i, : len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
        mask[i, : len(p) + len(a)] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    answered = labels[:, 1:] != -100
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ops this small gain nothing from two threads and crawl under load
    try:
        model.train()
        for _ in range(400):  # about 60 steps
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            # Every answer token is the argmax after its prefix: greedy decoding says the answer.
            if (out.logits[:, :-1].argmax(-1) == labels[:, 1:])[answered].all():
                break
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        for p, a in pairs:
            with torch.no_grad():
                out = model.generate(torch.tensor([p]), max_new_tokens=MAX_TOKENS, do_sample=False)
            assert out[0, len(p) :].tolist() == a[:MAX_TOKENS], "the tiny teacher did not overfit"
    finally:
        torch.set_num_threads(threads)
    assert sum(len(a) > MAX_TOKENS for _, a in pairs) == 1  # only the long answer is cut
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


class Server:
    def __init__(self, model: str, port: int, log: Path):
        self.model, self.log = model, log
        self.url = f"http://127.0.0.1:{port}"
        cli = str(Path(sys.executable).parent / "transformers")
        cmd = [cli, "serve", model, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--device", "cpu", "--dtype", "float32", "--log-level", "info"]
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=env())

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"transformers serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"transformers serve not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def chat_calls(self) -> int:
        return len(CHAT_OK.findall(self.log.read_text()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Path, Server]]:
    """A fresh clone whose `generate` params point at a teacher that `transformers serve`
    runs on loopback, trained on the clone's own prompts."""
    root = tmp_path_factory.mktemp("teacher")
    repo = fresh_clone(root / "repo")
    folder = root / "teacher"
    port = free_port()
    set_params(repo, str(folder), f"http://127.0.0.1:{port}/v1")
    params = yaml.safe_load((repo / "params.yaml").read_text("utf-8"))
    cwd = Path.cwd()
    try:  # build_prompts reads the text sources and templates from the working directory
        os.chdir(repo)
        prompts = build_prompts(GenerateParams.load(params), Counter())
    finally:
        os.chdir(cwd)
    assert len(prompts) == len(ANSWERS)
    overfit([p.messages for p in prompts], [a for a, _ in ANSWERS], folder)
    server = Server(str(folder), port, root / "serve.log")
    try:
        server.wait_ready()
        yield repo, server
    finally:
        server.stop()


def test_generate_through_dvc_against_transformers_serve(served):
    repo, server = served
    proc = dvc(repo, "repro", "generate", timeout=600)
    assert stages_run(proc.stdout) == {"generate"}, proc.stdout

    expected = Counter(fate for _, fate in ANSWERS)
    unparseable = expected["unparseable_answer"]
    m = json.loads((repo / "metrics/generate.json").read_text())
    # Every unparseable reply was asked again max_retries times; the rest once.
    assert m["retries"] == unparseable * MAX_RETRIES
    assert m["teacher_calls"] == len(ANSWERS) + m["retries"] == server.chat_calls()
    assert m["failed_attempts"] == {"unparseable_answer": unparseable * (1 + MAX_RETRIES)}
    assert m["records"] == expected["record"] and m["tokens_out"] > 0
    assert m["failures_by_rule"] == {"unparseable_answer": unparseable, "not_arabic": 1}

    records = pq.read_table(repo / "data/generated/synthetic.parquet").to_pylist()
    wanted = {json.loads(a)["output"] for a, fate in ANSWERS if fate == "record"}
    assert {r["output"] for r in records} == wanted
    assert {load_meta(r["meta"])["teacher_model"] for r in records} == {server.model}

    bad = pq.read_table(repo / "data/quarantine/generate.parquet").to_pylist()
    assert Counter(r["rule"] for r in bad) == {"unparseable_answer": unparseable, "not_arabic": 1}
    values = {r["value"] for r in bad if r["rule"] == "unparseable_answer"}
    assert ANSWERS[1][0] in values  # the prose, as the server sent it
    [cut] = values - {ANSWERS[1][0]}
    assert ANSWERS[3][0].startswith(cut) and len(cut) < len(ANSWERS[3][0])  # the long one, cut
    # The answers that parsed are cached (not_arabic included); the unparseable ones are not.
    cache = (repo / "data/generate_cache/answers.jsonl").read_text("utf-8").splitlines()
    assert len(cache) == 1 + len(ANSWERS) - unparseable  # + the header line

    calls = server.chat_calls()
    again = dvc(repo, "repro", "generate")
    assert stages_run(again.stdout) == set(), again.stdout
    assert server.chat_calls() == calls


def test_a_model_the_server_does_not_serve_stops_the_run(served):
    """A pinned `transformers serve` answers any other model id with 400, not 404: the run
    stops there instead of quarantining every prompt as a bad request."""
    _, server = served
    p = OpenAIParams(base_url=f"{server.url}/v1", max_retries=0)
    msgs = [[{"role": "user", "content": "اكتب جملة."}]] * 3
    with pytest.raises(teacher.TeacherError, match="HTTP 400 .*pinned"):
        teacher.openai_replies(
            msgs, "not-the-served-model", p, SamplingParams(), lambda _: True, print
        )
