"""Teacher backends of `generate`: an OpenAI-compatible chat-completions endpoint, or a local
transformers model. Both hand each reply to a callback as soon as it exists, so the caller
can put it in the cache before the next one arrives (a crash loses nothing already paid for).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from instar.params.generate import OpenAIParams, SamplingParams, TransformersTeacherParams

Messages = list[dict[str, str]]


class TeacherError(Exception):
    """The teacher cannot be used at all (no key, wrong URL or model): stop the run."""


@dataclass
class Reply:
    """A teacher's final word on one prompt: its text, or why there is none."""

    text: str | None
    failure: str | None = None  # the quarantine rule: http_429, timeout, unparseable_answer...
    detail: str = ""
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass
class Stats:
    calls: int = 0  # requests sent (or prompts generated locally), retries included
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    by_failure: dict[str, int] = field(default_factory=dict)  # every failed attempt, by kind

    def failed(self, kind: str) -> None:
        self.by_failure[kind] = self.by_failure.get(kind, 0) + 1


OnReply = Callable[[int, Reply], None]
Accept = Callable[[str], bool]


# --- OpenAI-compatible endpoint -------------------------------------------------------------


def api_key(p: OpenAIParams) -> str | None:
    if p.api_key_env is None:
        return None
    key = os.environ.get(p.api_key_env)
    if not key:
        raise TeacherError(
            f"generate.openai.api_key_env names {p.api_key_env!r}, which is not set: export "
            f"{p.api_key_env}=<key> (or set api_key_env: null for a server that needs none)"
        )
    return key


def backoff(attempt: int, p: OpenAIParams, retry_after: float | None = None) -> float:
    """Full jitter (uniform up to an exponentially growing ceiling), never below Retry-After."""
    delay = random.uniform(0, min(p.max_backoff_s, p.backoff_s * 2**attempt))
    if retry_after is not None:
        delay = max(delay, min(retry_after, p.max_backoff_s))
    return delay


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def refuses_model(status: int, text: str, model: str) -> bool:
    """Whether no prompt can succeed: a wrong key, URL or model (401, 403, 404), or a 400 that
    quotes the model id (`transformers serve` pinned to another model answers 400, not 404;
    a 400 about one prompt, such as one too long, names no model)."""
    quoted = any(f"{q}{model}{q}" in text for q in "'`\"")
    return status in (401, 403, 404) or (status == 400 and quoted)


async def _ask(
    client,
    sem: asyncio.Semaphore,
    body: dict[str, Any],
    p: OpenAIParams,
    accept: Accept,
    stats: Stats,
) -> Reply:
    import httpx

    last = Reply(None, "no_attempt")
    delay = 0.0
    for attempt in range(p.max_retries + 1):
        if attempt:
            stats.retries += 1
            await asyncio.sleep(delay)
        async with sem:
            stats.calls += 1
            try:
                r = await client.post("chat/completions", json=body)
            except httpx.TimeoutException as e:
                last, delay = Reply(None, "timeout", repr(e)), backoff(attempt, p)
                stats.failed("timeout")
                continue
            except httpx.TransportError as e:
                last, delay = Reply(None, "connection_error", repr(e)), backoff(attempt, p)
                stats.failed("connection_error")
                continue
        if refuses_model(r.status_code, r.text, body["model"]):
            raise TeacherError(
                f"{p.base_url}: HTTP {r.status_code} for model {body['model']!r} "
                f"(check generate.model, generate.openai.base_url and the API key): {r.text[:300]}"
            )
        if r.status_code == 429 or r.status_code >= 500:
            kind = f"http_{r.status_code}"
            stats.failed(kind)
            last = Reply(None, kind, r.text[:1000])
            delay = backoff(attempt, p, _retry_after(r.headers.get("retry-after")))
            continue
        if r.status_code >= 400:  # the request itself is wrong (too long a prompt): no retry
            stats.failed(f"http_{r.status_code}")
            return Reply(None, f"http_{r.status_code}", r.text[:1000])
        try:
            data = r.json()
            text = data["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            stats.failed("malformed_response")
            last, delay = (
                Reply(None, "malformed_response", f"{e!r}: {r.text[:1000]}"),
                backoff(attempt, p),
            )
            continue
        usage = data.get("usage") or {}
        tin, tout = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        stats.tokens_in += tin
        stats.tokens_out += tout
        if not accept(text):  # broken JSON in the answer: a new sample may well be whole
            stats.failed("unparseable_answer")
            last, delay = Reply(text, "unparseable_answer", text, tin, tout), backoff(attempt, p)
            continue
        return Reply(text, None, "", tin, tout)
    return last


async def _ask_all(
    prompts: Sequence[Messages],
    model: str,
    p: OpenAIParams,
    sampling: SamplingParams,
    accept: Accept,
    on_reply: OnReply,
    stats: Stats,
) -> None:
    import httpx

    headers = {"Content-Type": "application/json"}
    if key := api_key(p):
        headers["Authorization"] = f"Bearer {key}"
    sem = asyncio.Semaphore(p.concurrency)
    limits = httpx.Limits(max_connections=p.concurrency, max_keepalive_connections=p.concurrency)
    base = p.base_url.rstrip("/") + "/"
    async with httpx.AsyncClient(
        base_url=base, headers=headers, timeout=p.timeout_s, limits=limits
    ) as client:

        async def one(i: int, messages: Messages) -> None:
            body: dict[str, Any] = {
                "model": model,
                "messages": messages,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens,
            }
            if sampling.seed is not None:
                body["seed"] = sampling.seed
            if p.json_mode:
                body["response_format"] = {"type": "json_object"}
            on_reply(i, await _ask(client, sem, body, p, accept, stats))

        tasks = [asyncio.create_task(one(i, m)) for i, m in enumerate(prompts)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()


def openai_replies(
    prompts: Sequence[Messages],
    model: str,
    p: OpenAIParams,
    sampling: SamplingParams,
    accept: Accept,
    on_reply: OnReply,
) -> Stats:
    """Ask the endpoint for every prompt, `concurrency` at a time, retrying 429, 5xx, timeouts
    and broken JSON with backoff; each final reply goes to `on_reply(index, reply)`."""
    stats = Stats()
    asyncio.run(_ask_all(prompts, model, p, sampling, accept, on_reply, stats))
    if stats.calls and stats.by_failure.get("connection_error", 0) == stats.calls:
        raise TeacherError(f"{p.base_url}: no answer to any request (is the server running?)")
    return stats


# --- local transformers model ---------------------------------------------------------------


def _chat_text(tokenizer, messages: Messages) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # templates without a system role (Gemma): fold it into the user turn
        merged = [
            {"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
        ]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def transformers_replies(
    prompts: Sequence[Messages],
    model_path: str,
    p: TransformersTeacherParams,
    sampling: SamplingParams,
    on_reply: OnReply,
    progress: Callable | None = None,
) -> Stats:
    """Generate with a local model folder, `batch_size` prompts at a time (left padding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        dtype = "auto" if p.dtype == "auto" else getattr(torch, p.dtype)
        model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, dtype=dtype)
    except OSError as e:
        raise TeacherError(f"generate.model {model_path!r}: not a local model folder ({e})") from e
    model = model.to(p.device).eval()
    tok.padding_side = "left"  # generation continues at the right edge of every row
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    stats = Stats()
    starts = range(0, len(prompts), p.batch_size)
    for start in progress(starts, "teacher batches", len(starts)) if progress else starts:
        batch = prompts[start : start + p.batch_size]
        enc = tok(
            [_chat_text(tok, m) for m in batch],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
        ).to(p.device)
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False)
        with torch.no_grad():
            out = model.generate(**enc, pad_token_id=tok.pad_token_id, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        stats.calls += len(batch)
        for j in range(len(batch)):
            tin = int(enc["attention_mask"][j].sum())
            ids = [t for t in new[j].tolist() if t != tok.pad_token_id]
            text = tok.decode(ids, skip_special_tokens=True)
            stats.tokens_in += tin
            stats.tokens_out += len(ids)
            on_reply(start + j, Reply(text, None, "", tin, len(ids)))
    return stats
