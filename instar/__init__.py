"""InstAr: the library behind the pipeline's stages (stages/, one DVC entry point each).

text/ Arabic text functions; records/ the record schema and its I/O; params/ the typed
params sections; modeling/ models, chat templates and training data; evaluation/ lm-eval and
text metrics; cards/ dataset and model cards; validation/ Great Expectations; hub.py hub
repositories as files; teacher.py the teacher client; console.py how a stage talks.
"""

import os

# Set before dvc, datasets or transformers are imported (every stage, script and test imports
# this package first): the pipeline never phones home, and DVC logs stay free of bar residue.
for _var, _value in {
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_var, _value)
