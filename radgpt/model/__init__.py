"""Model core shared by training and drafting.

base         local base models: load, hash, import the embedded SmolLM2 GGUF
prompts      instruction tasks and versioned prompt templates (templates/*.json)
retrieval    TF-IDF neighbours from the train split, for few-shot prompts
spec         typed contracts: AdapterRecord (adapter_record.json) and the drafting ModelSpec
labeler      CheXpert-style rule labeler (14 observations): review flags at draft time, scores
carry        how often each Findings observation reaches the Impression (train split)
gguf_export  base + adapter merged, written as an F32 GGUF llama.cpp loads (`radgpt models export-gguf`)
"""
