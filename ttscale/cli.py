"""`ttscale <stage> [options]`: one subcommand per pipeline stage.

Each stage lives in its own module exposing `Config` (a dataclass, see ttscale.config) and
`run(cfg) -> int | None`. Stages are imported lazily so `ttscale --help` stays fast and a stage's
heavy dependencies load only when it runs. A user error (ttscale.errors.UserError, a missing file,
sys.exit("message")) prints `ttscale <stage>: error: ...` and exits 2; `--debug` shows its traceback.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from ttscale.errors import UserError

# stage name -> (module, one-line summary). Order = data flow.
STAGES: dict[str, tuple[str, str]] = {
    "convert": ("ttscale.data.convert_cmd", "convert step-labelled data between formats (math-shepherd, trl-stepwise, prm800k, processbench, rlhflow)"),
    "toy-world": ("ttscale.data.toy_world_cmd", "write a synthetic multi-step arithmetic problem set (the embedded default)"),
    "convert-gguf": ("ttscale.inference.convert_gguf_cmd", "turn a GGUF file into a save_pretrained checkpoint folder"),
    "train-policy": ("ttscale.train.train_policy_cmd", "train the tiny toy-world policy (TRL SFTTrainer) used by the demo"),
    "generate": ("ttscale.inference.generate_cmd", "sample step-by-step solutions for a problem set with any generation backend"),
    "label": ("ttscale.train.labeling.label_cmd", "Monte Carlo step labels from a policy (per-step, first-error, binary-search), resumable and shardable"),
    "merge": ("ttscale.train.labeling.merge_cmd", "join sharded `label` runs into one dataset and summary"),
    "build-revisions": ("ttscale.train.build_revisions_cmd", "revision training data: wrong attempts (closest by edit distance last) then a correct answer"),
    "build-critiques": ("ttscale.train.build_critiques_cmd", "generative-PRM data: a re-derivation of each labelled step, kept where its verdict agrees with the label"),
    "train-revision": ("ttscale.train.train_revision_cmd", "fine-tune a revision model (TRL SFTTrainer, loss on the corrected answer only)"),
    "train-prm": ("ttscale.train.train_prm_cmd", "train a process reward model (token classification or causal-LM +/-) on step labels; accelerate-launchable"),
    "evaluate": ("ttscale.eval.evaluate_cmd", "accuracy vs budget per strategy × aggregation × voting, difficulty bins, compute-optimal allocation file, report + plots"),
    "eval-prm": ("ttscale.eval.eval_prm_cmd", "ProcessBench-style evaluation of a PRM: first-error accuracy on erroneous/correct rows and F1 per split"),
    "search": ("ttscale.search.search_cmd", "test-time search (best-of-N, beam, lookahead, DVTS, revisions) with a policy, a PRM and a revision model"),
    "serve": ("ttscale.serve.serve_cmd", "serve test-time search (any strategy, a PRM, compute-optimal auto) as an OpenAI-compatible API, batched across requests"),
    "demo": ("ttscale.demo_cmd", "run the whole pipeline on the toy world (what `make demo` runs)"),
}


def _usage() -> str:
    width = max(len(s) for s in STAGES)
    lines = ["usage: ttscale <stage> [options]   (ttscale <stage> --help explains every option)", "", "stages:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in STAGES.items()]
    return "\n".join(lines)


# What a user can fix: printed as one line (exit 2). Anything else may be a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args  # global: accepted before or after the stage
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    stage, rest = args[0], args[1:]
    if stage not in STAGES:
        print(f"ttscale: unknown stage {stage!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return _run_stage(stage, rest)
    except USER_ERRORS as e:
        if debug:
            raise
        return _user_error(stage, e)
    except SystemExit as e:
        # sys.exit("message") from a stage is a user error too; argparse's exits (int codes) pass through
        if debug or e.code is None or isinstance(e.code, int):
            raise
        return _user_error(stage, e.code)


def _run_stage(stage: str, rest: list[str]) -> int:
    from ttscale.config import parse_config

    module_name, summary = STAGES[stage]
    _quiet_libraries(stage)
    module = importlib.import_module(module_name)
    cfg = parse_config(module.Config, rest, prog=f"ttscale {stage}", description=summary)
    try:
        rc = module.run(cfg)
    finally:
        _close_process_group()
    return int(rc or 0)


def _user_error(stage: str, error: object) -> int:
    print(f"ttscale {stage}: error: {error} (--debug shows the traceback)", file=sys.stderr)
    return 2


def _quiet_libraries(stage: str) -> None:
    """What every stage prints: the libraries' warnings at their default level (errors only on every process
    but rank 0 of a launched job), no tokenizers fork notice, and ttscale's own warnings as one line each
    (not Python's two-line form with the source line). Training stages add their own filters on top
    (train.options.quiet_libraries). Set before the stage imports the libraries, which read these once."""
    import os
    import warnings

    main = int(os.environ.get("RANK", "0")) == 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning" if main else "error")
    if not main:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    package = os.path.dirname(os.path.abspath(__file__))
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        ours = category.__module__.startswith("ttscale.") or os.path.abspath(str(filename)).startswith(package + os.sep)
        if ours:
            print(f"ttscale {stage}: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _close_process_group() -> None:
    """Under `accelerate launch` a stage leaves torch.distributed initialised; exiting with the gloo/NCCL
    group alive lets its worker threads die in static destructors, which aborts a rank now and then
    ("terminate called without an active exception", SIGABRT) after the job's work is done."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
