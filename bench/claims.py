"""The seeds' claims measured (issue 14, item 3): cleaned rows vs the raw export, and full fine-tuning vs LoRA vs
QLoRA, at equal steps on the CPU default model, with n and 95% intervals on every number.

Run: .venv/bin/python bench/claims.py [--lang en] [--steps 20] [--seed 0] [--full-lr 1e-4] [--model auto] [--resume]

Every arm trains the CPU course settings (recipe.course_settings(on_gpu=False): the two CPU_FOCUS intents, batch 8,
LoRA and QLoRA at 3e-3) for the same steps and seed; full fine-tuning at --full-lr. All arms answer the same
questions: data.eval_sets of the cleaned training rows ("trained facts": rewordings of trained facts; "untrained
facts") and data.general_dataset (general accuracy). The code is ftlib.claims.run, which notebook 02 runs when
CLAIMS = True. Prints the per-arm table, the paired comparisons and one sentence per claim, each decided by the
95% interval of the paired change; writes bench/results/claims_<lang>.json (after each arm: --resume goes on after a
run was cut off), which notebook 02 shows.
"""

import argparse
import os


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ftlib import claims

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="en", choices=["en", "ja"])
    parser.add_argument("--steps", type=int, default=None,
                        help="default: notebook 03's CPU steps (recipe.CPU_STEPS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-lr", type=float, default=claims.FULL_LEARNING_RATE)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--out", default=None, help="default: bench/results/claims_<lang>.json")
    parser.add_argument("--resume", action="store_true", help="keep the arms --out holds from a run cut off")
    args = parser.parse_args()

    out = args.out or claims.path(args.lang)  # written after each arm
    result = claims.run(args.model, args.lang, args.steps, args.seed, full_learning_rate=args.full_lr, file=out,
                        resume=args.resume)
    print(result.source)
    print(result.table().to_string())
    print(result.frame().to_string())
    print(f"wrote {out}")
    print("\n".join(result.sentences()))


if __name__ == "__main__":
    main()
