"""Stage configs composed from shared option groups: sampling, run identity, prefixed groups, bounds."""
from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

from ttscale.cli import STAGES
from ttscale.config import OMIT, build_parser, check_options, field, overrides, parse_config, run_identity, tweak
from ttscale.inference.base import SamplingParams
from ttscale.inference.loading import GeneratorArgs, ReviserArgs
from ttscale.inference.sampling_args import SamplingArgs


def test_sampling_args_params_and_overrides():
    s = SamplingArgs(temperature=0.5, top_p=0.9, max_new_tokens=7, seed=3)
    assert s.params(4) == SamplingParams(n=4, temperature=0.5, top_p=0.9, max_new_tokens=7, seed=3)
    assert s.params(2, stop=("\n\n",), temperature=0.0) == SamplingParams(
        n=2, temperature=0.0, top_p=0.9, max_new_tokens=7, seed=3, stop=("\n\n",))


def _stage(name: str) -> type:
    return importlib.import_module(STAGES[name][0]).Config


def test_stage_defaults_come_from_overrides_not_redeclared_fields():
    label, generate, revisions = _stage("label"), _stage("generate"), _stage("build-revisions")
    fields = {c: {f.name: f for f in dataclasses.fields(c)} for c in (label, generate, revisions)}
    assert fields[label]["max_new_tokens"].default == 256 and fields[generate]["max_new_tokens"].default == 512
    assert fields[generate]["temperature"].default == 0.7 and fields[revisions]["temperature"].default == 0.8
    # the help text and bounds are SamplingArgs' own, not a copy
    base = {f.name: f for f in dataclasses.fields(SamplingArgs)}
    assert fields[label]["max_new_tokens"].metadata["help"] == base["max_new_tokens"].metadata["help"]
    assert fields[label]["top_p"].metadata["le"] == 1
    assert "same rows" in fields[revisions]["seed"].metadata["help"]
    # build-revisions grades whole answers: no --step-delimiter there
    assert "--step-delimiter" not in build_parser(revisions).format_help()
    assert "--step-delimiter" in build_parser(label).format_help()


@pytest.mark.parametrize("stage, flags", [
    ("label", ["--method", "--rollouts", "--threshold", "--temperature", "--top-p", "--max-new-tokens", "--seed",
               "--step-delimiter", "--chunk-size", "--num-shards", "--policy", "--problems", "OUTPUT_DIR"]),
    ("generate", ["--n", "--until", "--stop", "--temperature", "--top-p", "--max-new-tokens", "--seed",
                  "--step-delimiter", "--problems-per-call", "--policy", "OUTPUT"]),
    ("build-revisions", ["--samples", "--samples-per-problem", "--max-incorrect", "--temperature", "--top-p",
                         "--max-new-tokens", "--seed", "--prompt-batch", "--policy", "OUTPUT"]),
])
def test_help_lists_every_option(stage, flags):
    text = build_parser(_stage(stage)).format_help()
    assert all(flag in text for flag in flags), [f for f in flags if f not in text]


def test_label_parses_into_the_labeler_args():
    cfg = parse_config(_stage("label"), ["out", "--problems", "p.jsonl", "--policy", "m", "--rollouts", "3",
                                         "--step-delimiter", "\n", "--max-new-tokens", "9"])
    assert (cfg.rollouts, cfg.step_delimiter) == (3, "\n")
    assert cfg.params(cfg.rollouts) == SamplingParams(n=3, temperature=0.8, max_new_tokens=9)


def test_run_identity_leaves_out_operational_options():
    cfg = parse_config(_stage("label"), ["out", "--problems", "p.jsonl", "--policy", "m", "--threads", "2"])
    ident = run_identity(cfg)
    for key in ("method", "rollouts", "temperature", "top_p", "max_new_tokens", "seed", "threshold", "chunk_size",
                "step_delimiter", "solutions_field", "policy", "problems", "dtype", "backend"):
        assert key in ident, key
    for key in ("output_dir", "threads", "batch_size", "device", "rollout_batch", "num_shards", "shard_index",
                "export", "api_key", "max_concurrency", "base_url"):
        assert key not in ident, key


def test_run_identity_follows_field_metadata():
    @dataclasses.dataclass
    class C:
        a: int = field(1, help="a")
        b: int = field(2, help="b", run_key=False)

    assert run_identity(C()) == {"a": 1}


@dataclasses.dataclass(kw_only=True)
class _Search(GeneratorArgs, ReviserArgs):
    policy: str | None = field(None, help="policy model")


def test_reviser_defaults_to_the_policy_options():
    cfg = parse_config(_Search, ["--policy", "pol", "--adapter", "lora", "--gguf-file", "x.gguf", "--dtype",
                                 "bfloat16", "--backend", "openai", "--revision-model", "rev"])
    # the policy's options, the revision model as the model, no adapter / GGUF carried over, and a GPU share
    # of its own (two engines on one GPU must not each take the policy's)
    assert cfg.reviser_generator_args(cfg) == dataclasses.replace(
        GeneratorArgs(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(GeneratorArgs)}),
        policy="rev", adapter=None, gguf_file=None, gpu_memory_utilization=0.3)
    assert parse_config(_Search, ["--policy", "pol"]).reviser_generator_args(cfg) is None


def test_reviser_options_override_the_policy_ones():
    cfg = parse_config(_Search, ["--policy", "pol", "--device", "cuda:0", "--batch-size", "8", "--revision-model",
                                 "rev", "--reviser-device", "cuda:1", "--reviser-batch-size", "2",
                                 "--reviser-backend", "vllm", "--reviser-gpu-memory-utilization", "0.3"])
    rev = cfg.reviser_generator_args(cfg)
    assert (rev.policy, rev.device, rev.batch_size, rev.backend, rev.gpu_memory_utilization) == (
        "rev", "cuda:1", 2, "vllm", 0.3)
    assert (cfg.device, cfg.batch_size, cfg.backend) == ("cuda:0", 8, "transformers")  # the policy's are untouched
    text = build_parser(_Search).format_help()
    assert "--reviser-dtype" in text and "--reviser-adapter" not in text and "the same as --dtype" in text
    # the copies keep choices, bounds and run_key
    with pytest.raises(SystemExit):
        parse_config(_Search, ["--reviser-backend", "nope"])
    ident = run_identity(cfg)
    assert "reviser_backend" in ident and "revision_model" in ident and "reviser_device" not in ident


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
    (["--top-p", "0"], r"--top-p must be in \(0, 1\], got 0.0"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
    (["--threshold", "1"], r"--threshold must be in \[0, 1\), got 1.0"),
    (["--rollouts", "0"], "--rollouts must be >= 1, got 0"),
    (["--min-pass", "1.5"], r"--min-pass must be in \[0, 1\], got 1.5"),
    (["--num-shards", "0"], "--num-shards must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
])
def test_bounds_name_the_flag_and_range(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_config(_stage("label"), ["out", "--policy", "m", *argv])
    err = capsys.readouterr().err
    assert re.search(message, err), err


@pytest.mark.parametrize("stage, argv, message", [
    ("generate", ["out.jsonl", "--policy", "m", "--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
    ("label", ["out", "--policy", "m", "--threshold", "2"], r"--threshold must be in \[0, 1\), got 2.0"),
    ("build-revisions", ["o.jsonl", "--policy", "m", "--samples-per-problem", "0"],
     "--samples-per-problem must be >= 1, got 0"),
    ("toy-world", ["o.jsonl", "--levels", "1", "6"], r"--levels must be in \[1, 5\], got 6"),
    ("toy-world", ["o.jsonl", "--mistake-fraction", "1.5"], r"--mistake-fraction must be in \[0, 1\], got 1.5"),
    ("convert", ["a.jsonl", "b.jsonl", "--to", "trl-stepwise", "--hard-threshold", "1"],
     r"--hard-threshold must be in \[0, 1\), got 1.0"),
    ("demo", ["--threads", "0"], "--threads must be >= 1, got 0"),
    ("merge", ["out", "a", "--threads", "0"], "--threads must be >= 1, got 0"),
])
def test_stage_bounds_are_one_line_naming_the_flag(stage, argv, message, capsys):
    """Each stage rejects a nonsense value with one line (no usage block) that names the flag and range."""
    from ttscale.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([stage, *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(f"^ttscale {stage}: error: {message}", err), err


def test_bounds_apply_to_yaml_values_and_name_the_file(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("top_p: 1.5\nmethod: first-error\n")
    with pytest.raises(SystemExit):
        parse_config(_stage("label"), ["out", "--policy", "m", "--config", str(path)])
    assert f"{path}: top_p: --top-p must be in (0, 1], got 1.5" in capsys.readouterr().err
    path.write_text("method: nope\n")
    with pytest.raises(SystemExit):
        parse_config(_stage("label"), ["out", "--policy", "m", "--config", str(path)])
    assert "--method must be one of per-step" in capsys.readouterr().err
    # a flag given on the command line overrides the YAML value before the check
    path.write_text("top_p: 1.5\n")
    assert parse_config(_stage("label"), ["out", "--policy", "m", "--config", str(path), "--top-p", "0.5"]).top_p == 0.5


def test_check_options_for_configs_built_in_code():
    check_options(SamplingArgs())
    with pytest.raises(ValueError, match="--temperature must be >= 0, got -0.5"):
        check_options(SamplingArgs(temperature=-0.5))


def test_overrides_default_help_and_omit():
    @dataclasses.dataclass(kw_only=True)
    class WithStops(SamplingArgs):
        stop: list[str] = field(default_factory=list, help="stops")

    @dataclasses.dataclass(kw_only=True)
    @overrides(max_new_tokens=tweak(64, help="per answer"), step_delimiter=OMIT, stop=["x"])
    class C(WithStops):
        pass

    c = parse_config(C, [])
    assert (c.max_new_tokens, c.stop, c.step_delimiter) == (64, ["x"], "\n\n")
    text = build_parser(C).format_help()
    assert "per answer (default: 64)" in text and "--step-delimiter" not in text
    assert {f.name: f for f in dataclasses.fields(SamplingArgs)}["max_new_tokens"].default == 512  # base untouched
    with pytest.raises(TypeError, match="no option 'nope'"):
        overrides(nope=1)(type("D", (SamplingArgs,), {}))


def test_policy_and_reviser_gpu_shares_fit_one_gpu_with_the_prm_by_default():
    from ttscale.config import parse_config
    from ttscale.search.search_cmd import Config

    base = ["out", "--strategy", "revisions", "--revision-model", "rev", "--problems", "p", "--voting", "majority"]
    cfg = parse_config(Config, base)
    reviser = cfg.reviser_generator_args(cfg)
    assert cfg.gpu_memory_utilization + reviser.gpu_memory_utilization < 0.9
    set_ = parse_config(Config, base + ["--gpu-memory-utilization", "0.6", "--reviser-gpu-memory-utilization", "0.2"])
    assert (set_.gpu_memory_utilization, set_.reviser_generator_args(set_).gpu_memory_utilization) == (0.6, 0.2)
