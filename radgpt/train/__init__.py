"""LoRA instruction tuning on Ray Train.

    radgpt train [--config FILE] [--data DIR] [--base-model DIR] [--out DIR] [--resume] [--max-steps N]
    python training/train_lora.py ...                      # same, as a plain script
    ray job submit --working-dir . -- python training/train_lora.py ...

Modules: data.py (table -> records -> batches), loop.py (the worker loop), run.py (the driver),
adapter.py (adapter_record.json).
"""
