"""How evaluation loads and feeds a model: as training loads it (4-bit, trust_remote_code, a
tokenizer without a pad token), on the model's own device, and with the test loss computed
without an fp32 copy of the whole logits tensor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from instar.modeling.chat import to_messages
from instar.params.evaluate import EvaluateParams
from instar.params.train import ModelParams
from tests.standin_models import save_standin
from tests.test_train import make_repo, model_params, records, trainer_for

LLAMA3 = "meta-llama/Meta-Llama-3-8B-Instruct"


def eval_params(**kw) -> EvaluateParams:
    return EvaluateParams.model_validate(
        {"batch_size": 3, "max_length": 96, "generation": {"max_new_tokens": 4, "batch_size": 3}}
        | kw
    )


def examples(n: int) -> list[list[dict]]:
    return [to_messages(r, True) for r in records(n)]


def workspace(root: Path, name: str = "m", **train) -> ModelParams:
    """params, splits and the base of model `name` under `root` (the working directory)."""
    m = model_params("llama", max_steps=2, **train)
    make_repo(root, name, m, n_train=16)
    return m


def llama3_standin(root: Path, name: str = "m") -> None:
    """The base of `name` replaced by the tiny Llama-3-Instruct stand-in: no pad token."""
    base = root / "models" / name / "base"
    shutil.rmtree(base)
    texts = [t for r in records(16) for t in r.values() if t]
    save_standin(LLAMA3, texts, base)


def random_adapter(root: Path, name: str, m: ModelParams) -> None:
    """An adapter whose B matrices are not zero, as after training."""
    from peft import LoraConfig, get_peft_model

    from instar.modeling.loading import adapter_dir, load_base

    plain = m.model_copy(update={"train": m.train.model_copy(update={"quantization": "none"})})
    _, net = load_base(name, plain)
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(net, lora).save_pretrained(root / adapter_dir(name))


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Stop(Exception):
    """Raised by a stub once it has seen what the test needs."""


# ------------------------------------------------------------------------ device and memory


class ElsewhereModel:
    """A model whose input embeddings live on the `meta` device, as a model on a GPU lives
    elsewhere than the CPU: it records where its inputs are, then stops."""

    def __init__(self):
        import torch

        self.weight = torch.empty(8, 4, device="meta")
        self.seen: list[str] = []

    def get_input_embeddings(self):
        return self

    @property
    def device(self):
        return self.weight.device

    def eval(self):
        return self

    def __call__(self, **inputs):
        self.seen += [t.device.type for t in inputs.values() if hasattr(t, "device")]
        raise Stop

    generate = __call__


def test_loss_and_generation_inputs_go_to_the_models_device(repo):
    from instar.modeling.loading import load_base
    from stages.evaluate import assistant_loss, generate

    workspace(repo)
    tokenizer, _ = load_base("m", model_params("llama"))
    net = ElsewhereModel()
    with pytest.raises(Stop):
        assistant_loss(net, tokenizer, examples(2), eval_params(), "test")
    assert net.seen == ["meta", "meta"]  # input_ids and attention_mask
    net.seen.clear()
    with pytest.raises(Stop):
        generate(net, tokenizer, [e[:-1] for e in examples(2)], eval_params())
    assert net.seen == ["meta", "meta"]


def watched_class():
    """A tensor subclass that records the size of every fp32 tensor computed from it."""
    import torch

    class Watched(torch.Tensor):
        fp32: list[int] = []

        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            out = super().__torch_function__(func, types, args, kwargs or {})
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                    cls.fp32.append(t.numel())
            return out

    return Watched


class Bf16Logits:
    """A real model whose logits come back in bf16 (as a bf16 model's do), watched."""

    def __init__(self, net, watched):
        self.net, self.watched, self.logits = net, watched, []

    def get_input_embeddings(self):
        return self.net.get_input_embeddings()

    def eval(self):
        return self

    def __call__(self, **inputs):
        import torch

        out = self.net(**inputs)
        logits = out.logits.to(torch.bfloat16)
        self.logits.append((logits.clone(), inputs["attention_mask"].clone()))
        out.logits = logits.as_subclass(self.watched)
        return out


def test_test_loss_equals_the_fp32_reference_without_an_fp32_copy_of_the_logits(repo):
    import torch

    from instar.modeling.loading import load_base
    from stages.evaluate import assistant_loss, encode

    workspace(repo)
    tokenizer, net = load_base("m", model_params("llama"))
    watched = watched_class()
    model = Bf16Logits(net, watched)
    params = eval_params()
    batch = examples(3)  # one batch of three, of different lengths
    got = assistant_loss(model, tokenizer, batch, params, "test")

    # The reference: every position's loss from the full logits made fp32 at once.
    ((logits, _),) = model.logits
    encoded = [encode(tokenizer, e, params.max_length) for e in batch]
    width = logits.shape[1]
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in encoded])
    full = logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(
        full.reshape(-1, full.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100,
        reduction="sum",
    )  # fmt: skip
    tokens = int((labels[:, 1:] != -100).sum())
    assert got["tokens"] == tokens > 0
    assert got["loss"] == pytest.approx(nll.item() / tokens, abs=1e-5)
    # The loss read fp32 rows, never a tensor the size of the shifted logits.
    assert watched.fp32 and max(watched.fp32) < full.numel()
    assert max(watched.fp32) <= tokens * logits.shape[-1]


# ------------------------------------------------------------------- loading as training


def capture_lm(monkeypatch) -> list:
    """Stub the benchmarks: the lm-eval model they would receive is kept, then Stop."""
    import instar.evaluation.harness

    seen: list = []

    def run_benchmarks(lm, *args, **kw):
        seen.append(lm)
        raise Stop

    monkeypatch.setattr(instar.evaluation.harness, "run_benchmarks", run_benchmarks)
    return seen


@pytest.mark.parametrize("variant", ["base", "adapter"])
def test_a_4bit_model_reaches_lm_eval_as_training_loaded_it(repo, monkeypatch, variant):
    import bitsandbytes as bnb
    from lm_eval.models.huggingface import HFLM
    from peft import PeftModel

    from stages.evaluate import assistant_loss, evaluate_variant

    m = workspace(repo, quantization="4bit")
    random_adapter(repo, "m", m)
    seen = capture_lm(monkeypatch)
    with pytest.raises(Stop):
        evaluate_variant("m", m, eval_params(), variant)
    (lm,) = seen
    assert isinstance(lm, HFLM)
    layers = [x for x in lm.model.modules() if isinstance(x, bnb.nn.Linear4bit)]
    assert layers and layers[0].weight.quant_type == "nf4"
    assert layers[0].weight.quant_state.nested  # double quantisation, as in training
    assert isinstance(lm.model, PeftModel) == (variant == "adapter")
    loss = assistant_loss(lm.model, lm.tokenizer, examples(2), eval_params(), "test")
    assert loss["tokens"] > 0 and loss["loss"] == loss["loss"]  # finite, not NaN


def test_evaluation_honours_trust_remote_code_as_training_does(repo, monkeypatch):
    from transformers import AutoModelForCausalLM

    from stages.evaluate import evaluate_variant

    m = workspace(repo, trust_remote_code=True)
    calls: list = []
    load = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kw):
        calls.append(kw.get("trust_remote_code"))
        return load(*args, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    capture_lm(monkeypatch)
    with pytest.raises(Stop):
        evaluate_variant("m", m, eval_params(), "base")
    assert calls == [True]


def test_a_tokenizer_without_pad_evaluates_and_trains_padded_with_eos(repo):
    """Meta-Llama-3-8B-Instruct ships no pad token: evaluation pads with eos, as TRL does."""
    from instar.modeling.loading import load_base
    from stages.evaluate import assistant_loss, generate

    m = workspace(repo)
    llama3_standin(repo)
    tokenizer, net = load_base("m", m)
    batch = examples(3)  # lengths differ: padding is used
    loss = assistant_loss(net, tokenizer, batch, eval_params(), "test")
    assert loss["tokens"] > 0 and loss["loss"] == loss["loss"]
    answers = generate(net, tokenizer, [e[:-1] for e in batch], eval_params())
    assert len(answers) == 3
    assert tokenizer.pad_token == tokenizer.eos_token is not None
    # Training the same base pads with the same token (TRL's own choice agrees).
    tok, trainer = trainer_for("m", m)
    assert trainer.processing_class.pad_token_id == tok.eos_token_id == tokenizer.pad_token_id
    trainer.train()
    assert trainer.state.global_step == 2
