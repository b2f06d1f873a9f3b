"""A tiny LoRA model sharded with FSDP2 over gloo on CPU, saved through stages.train.save_adapter.

    torchrun --standalone --nproc_per_node 2 tests/fsdp_save.py OUT   # the sharded save
    python tests/fsdp_save.py OUT                                    # one process, unsharded
    torchrun ... tests/fsdp_save.py OUT cuda      # on GPUs over NCCL (scripts/gpu_check.py)

Run from the repo root (templates/chat is read from there). Both build the same model from the
same seed, so their adapters must be equal tensor for tensor (tests/test_train.py compares).
accelerate turns FSDP on only for GPU backends, so the stage itself cannot show this on CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXTS = ["ما عاصمة مصر؟", "عاصمة مصر هي القاهرة.", "ما عاصمة المغرب؟", "الرباط."] * 8


def params():
    from instar.params.train import ModelParams

    return ModelParams.model_validate(
        {
            "base": {"kind": "config", "architecture": "llama", "chat_template": "llama3",
                     "vocab_size": 300,
                     "config": {"hidden_size": 32, "intermediate_size": 64,
                                "num_hidden_layers": 2, "num_attention_heads": 2,
                                "num_key_value_heads": 1, "max_position_embeddings": 64,
                                "tie_word_embeddings": False}},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
            "train": {"learning_rate": 1e-3, "batch_size": 2, "max_length": 32},
        }
    )  # fmt: skip


def build(seed: int = 0):
    """Tokenizer and PEFT LoRA model; the adapter's B matrices are random (PEFT starts them
    at zero), so that a save that loses or mixes shards cannot pass for a right one."""
    import torch
    from peft import get_peft_model

    from instar.modeling.build import build_model, build_tokenizer
    from instar.modeling.trainer import lora_config

    m = params()
    tok = build_tokenizer(TEXTS, m.base.vocab_size, m.base.chat_template)
    torch.manual_seed(seed)
    net = get_peft_model(build_model(m.base, tok), lora_config(m))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_()
    return tok, net, m


def main(out: Path, device: str = "cpu") -> None:
    import torch
    import torch.distributed as dist

    from stages.train import save_adapter

    sharded = "LOCAL_RANK" in os.environ
    tok, net, m = build()
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        net = net.to("cuda")
    if sharded:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("nccl" if device == "cuda" else "gloo")
        mesh = init_device_mesh(device, (dist.get_world_size(),))
        for layer in net.base_model.model.model.layers:  # as accelerate's transformer wrap
            fully_shard(layer, mesh=mesh)
        fully_shard(net, mesh=mesh)
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # save_adapter writes models/<model>/adapter under the working directory
    saved = save_adapter(net, tok, "m", m)
    print(f"rank {os.environ.get('RANK', '0')}: {saved}", flush=True)
    if sharded:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), *sys.argv[2:])
