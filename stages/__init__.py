"""InstAr pipeline stages: one module a DVC stage, plus the few shared modules they import."""

import os

# Set before dvc, datasets or transformers are imported (`python -m stages.x` imports this
# package first): the pipeline never phones home, and DVC logs stay free of bar residue.
for _var, _value in {
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_var, _value)
