"""ftlib: the helper package of the fine-tuning course. Each module is one concept of the course.

Module map, in the order the notebooks meet them (lower layers first; a module imports only those above it):

| module | holds | notebook |
|---|---|---|
| env | the machine: platform, device, compute dtype, offline check, seeds, where runs go | 00 |
| models | presets, load (4/8/16-bit, fp32), pad token, padding side | 00 |
| readers | reading CSV/TSV/JSON/JSONL/Parquet, DataFrames and Datasets with located errors | 01, 08 |
| data | clean (opt-in rules, every row counted), split (leak-free), to_dataset, from_file, the course data | 01, 08 |
| recipe | defaults, the three configs (BitsAndBytesConfig, LoraConfig, SFTConfig), trainer_basics, prepare | 03 |
| architecture | what a model is made of, read off its config on the meta device | 02 |
| estimator | the memory estimate, component by component; the T4 table | 02 |
| train | train() on TRL's SFTTrainer: length buckets, tokens counted, checkpoints, resume, live loss, CLI | 03 |
| measure | memory measured over real training steps | 02 |
| published, training_time, calculator | published figures, epoch time from FLOPs, the memory widget | 02 |
| memory | the one door notebook 02 calls: re-exports estimator, measure, published, training_time, calculator | 02 |
| generate | batched generation (left padding), streaming, speed | 00, 04 |
| metrics | fact scores, classification, text metrics (Japanese-aware), perplexity, report card, intervals | 03-08 |
| evaluate_modules | ftlib's metrics as `evaluate` modules, loaded by path offline (no Hub) | 04, 06 |
| review | the blind side-by-side rating widget, win rate, agreement | 04 |
| retrieval | TF-IDF retrieval for RAG (Japanese by dictionary words), recall@k | 05 |
| claims | the seeds' claims measured: clean vs raw rows, full vs LoRA vs QLoRA, general ability, with intervals | 02 |
| classify | an encoder, a classification head + LoRA, a TF-IDF baseline, the chat model as a classifier | 06 |
| export | checked merge, save with a model card, sizes, adapter switching, publishing | 07, 08 |
| serve | a FastAPI endpoint | 07 |
| plots | every chart the notebooks show | all |
| check | the "Check yourself" exercises, checked offline | all |
| course | runs every notebook (make course, CI), records their headline results, says where the course lives | - |
| plan | every notebook step's estimated memory on a T4, L4, A100 or CPU, and whether it fits | - |
| i18n | the Japanese notebooks, generated from the English ones and notebooks/i18n/ja.yaml | - |
"""

__version__ = "0.1.0"
