"""Does chapter 6's run work on this machine's accelerator, and how fast is the ``full`` preset there?

    python benchmarks/device_check.py            # everything; at most 5 minutes on one H100-class GPU
    python benchmarks/device_check.py --quick    # the CPU parts only, small (the test suite runs this)

Exit status 0 when every check passed, 1 when one failed (each failure is printed as ``FAIL``). On a
machine without CUDA it says so, runs the CPU parts and exits 0 (when they pass).

Checks, in order:

1. **CPU reference.** The smoke preset's reference model and reward model, trained on the CPU in float32.
   These models are the common starting point of the comparisons below.
2. **First iteration, CUDA float32 against the CPU.** One PPO iteration from the same models, seed and
   batch on both devices: the rollout's tokens (the Gumbel noise is drawn on the CPU, so they agree unless
   rounding flips a near tie), the scoring (log-probabilities, values, score, advantages: at most
   ``SCORE_TOL`` apart), the update's losses and statistics (at most ``UPDATE_ATOL + UPDATE_RTOL |cpu|``
   apart; ``CLIPFRAC_ATOL`` for the clipped share, a count of tokens) and the updated weights (at most
   ``WEIGHT_TOL`` apart). Four Adam steps amplify rounding differences: hence the looser update bounds.
3. **The smoke pipeline end to end on CUDA**: reference model, reward model, PPO and GRPO, in mixed precision
   (bfloat16 where ``torch.cuda.is_bf16_supported()``, else float16 with the grad scaler), in float32 and,
   where bfloat16 is the default, in float16 with the grad scaler as well. Every logged loss, reward and
   KL must be finite.
4. **Resume on the device.** A smoke PPO run stopped after 3 iterations and resumed must log what an
   uninterrupted run logs: bit for bit on the CPU; on CUDA (deterministic algorithms on) within
   ``RESUME_RTOL``, with the same sample texts.
5. **The ``full`` preset's speed.** The device's bfloat16 matmul peak (a large matmul timed with CUDA
   events; float32 on the CPU), then ``--iterations`` PPO iterations at the ``full`` preset's sizes
   (freshly initialized models: responses run to their maximum length, so these are upper bounds):
   seconds per iteration, generated tokens/s, update time, peak device memory, and the share of the matmul
   peak the update reaches (its FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``). With
   ``--compile`` (default on CUDA) the same with ``torch.compile``.
6. **What the ``full`` pipeline would take.** Per-stage cost measured on short pieces (SFT steps, reward
   model pairs and steps, PPO iterations) and extrapolated to the ``full`` preset's counts: the figures
   needed to size that preset so the whole pipeline fits in 10 minutes.

On the CPU (no CUDA) the same code runs with the CPU in place of CUDA, smaller: the comparison is CPU
against CPU (it must be exact), the end-to-end checks run the PPO stage in bfloat16 and in float16 with
the grad scaler (CPU autocast: the mixed-precision code paths, exercised where there is no GPU), and the
speed section uses a few iterations (``--quick``: a reduced batch).
"""
from __future__ import annotations

import os

# cuBLAS needs this before CUDA starts for deterministic algorithms (the resume check); harmless otherwise
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from rlhf_course import grpo, ppo  # noqa: E402
from rlhf_course.device import autocast_dtype, precision  # noqa: E402
from rlhf_course.gpt import GPT, count_parameters  # noqa: E402
from rlhf_course.ppo import PRESETS, PPOTrainer, RunInterrupted, train_ppo  # noqa: E402
from rlhf_course.reward_model import RewardModel, ensure_reward_model, load_reward_model, train_reward_model  # noqa: E402
from rlhf_course.runs import read_json, read_jsonl  # noqa: E402
from rlhf_course.sft import load_model, train_sft  # noqa: E402
from rlhf_course.world import World  # noqa: E402

SCORE_TOL = 1e-4       # log-probabilities, values, scores, advantages after one forward pass
UPDATE_ATOL = 1e-4     # update statistics after ppo_epochs Adam steps
UPDATE_RTOL = 1e-3
CLIPFRAC_ATOL = 0.02   # a share of tokens: one token at the clip boundary may fall either side
WEIGHT_TOL = 1e-4      # policy weights after the update
RESUME_RTOL = 1e-3     # CUDA resume: relative difference of any logged number
WALL = {"time_rollout", "time_score", "time_update", "time_iteration", "seconds"}
FINITE = ("proxy", "gold", "kl", "kl_k3", "objective", "entropy", "approx_kl", "policy_loss", "value_loss")
FINITE_GRPO = ("proxy", "gold", "kl", "kl_token_k3", "objective", "entropy", "loss", "policy_loss")
BUDGET_S = 600.0       # the full pipeline's target on one GPU


class Report:
    """PASS/FAIL lines, remembered for the exit status."""

    def __init__(self):
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
        if not ok:
            self.failures.append(what)
        return ok


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_trainer(cfg: ppo.PPOConfig, sft_dir: Path, rm_dir: Path, device: torch.device,
                 compile: bool = False) -> PPOTrainer:
    """The trainer ``train_ppo`` builds, from a pipeline folder's models."""
    world = World()
    torch.manual_seed(cfg.seed)
    reference = load_model(sft_dir, device=device)
    policy = load_model(sft_dir, device=device, value_head=cfg.shared_value)
    value_model = None if cfg.shared_value else load_model(sft_dir, device=device, value_head=True)
    rm = load_reward_model(rm_dir, device=device)
    rm.requires_grad_(False)
    tok = world.tokenizer
    return PPOTrainer(cfg, policy, reference, rm, torch.as_tensor(world.prompts(), device=device), tok.eos_id,
                      tok.pad_id, value_model, compile=compile)


# --------------------------------------------------------------------------------------------------
# 2. first iteration against the CPU


def first_iteration(rep: Report, sft_dir: Path, rm_dir: Path, device: torch.device) -> None:
    cfg = PRESETS["smoke"].ppo
    print(f"first PPO iteration: {device} float32 against the CPU (same models, seed, batch)")
    t_cpu = make_trainer(cfg, sft_dir, rm_dir, torch.device("cpu"))
    with precision("fp32"):
        t_dev = make_trainer(cfg, sft_dir, rm_dir, device)
        tokens, mask = t_cpu.rollout()
        after_rollout = t_cpu.generator.get_state()
        tokens_d, mask_d = t_dev.rollout()
        same_rows = (tokens_d.cpu()[:, :tokens.shape[1]] == tokens[:, :tokens_d.shape[1]]).all(1).float().mean()
        rep.check(tokens.shape == tokens_d.shape and float(same_rows) >= 0.9,
                  f"rollout tokens: {float(same_rows):.0%} of rows identical (>= 90%: a near tie may flip)")
        # score and update the CPU's batch on both devices, from the same random stream
        b_c = t_cpu.advantages(t_cpu.rewards(t_cpu.score(tokens, mask)))
        b_d = t_dev.advantages(t_dev.rewards(t_dev.score(tokens.to(device), mask.to(device))))
        worst = {k: float((getattr(b_c, k).float() - getattr(b_d, k).float().cpu()).abs().max())
                 for k in ("old_logp", "ref_logp", "old_values", "score", "rewards", "advantages", "returns")}
        k_worst = max(worst, key=worst.get)
        rep.check(worst[k_worst] <= SCORE_TOL, f"scoring: largest difference {worst[k_worst]:.2e} ({k_worst}), "
                                               f"tolerance {SCORE_TOL:g}")
        t_dev.generator.set_state(after_rollout)
        s_c, s_d = t_cpu.update(b_c), t_dev.update(b_d)
    for k in s_c:
        tol = CLIPFRAC_ATOL if "clipfrac" in k else UPDATE_ATOL + UPDATE_RTOL * abs(s_c[k])
        rep.check(math.isfinite(s_d[k]) and abs(s_c[k] - s_d[k]) <= tol,
                  f"update {k}: cpu {s_c[k]:.6g}, {device.type} {s_d[k]:.6g} (|diff| {abs(s_c[k] - s_d[k]):.1e} "
                  f"<= {tol:.1e})")
    dw = max(float((p.detach() - q.detach().cpu()).abs().max())
             for p, q in zip(t_cpu.policy.parameters(), t_dev.policy.parameters()))
    rep.check(dw <= WEIGHT_TOL, f"policy weights after the update: largest difference {dw:.2e} <= {WEIGHT_TOL:g}")


# --------------------------------------------------------------------------------------------------
# 3. end to end


def finite_run(rep: Report, run_dir: Path, label: str, stages: bool, what: str = "PPO") -> None:
    recs = read_jsonl(run_dir / "metrics.jsonl")
    keys = FINITE if what == "PPO" else FINITE_GRPO
    bad = [(r["step"], k, r.get(k)) for r in recs for k in keys
           if not (isinstance(r.get(k), (int, float)) and math.isfinite(r[k]))]
    rep.check(len(recs) > 0 and not bad, f"{label}: {len(recs)} {what} iterations, every loss, reward and KL "
                                         f"finite" + (f" (not: {bad[:3]})" if bad else ""))
    if stages:
        for stage in ("sft", "reward_model"):
            losses = [r["loss"] for r in read_jsonl(run_dir.parent / stage / "metrics.jsonl")]
            rep.check(bool(losses) and all(math.isfinite(x) for x in losses),
                      f"{label}: {stage} losses finite ({len(losses)} logged, last {losses[-1]:.3f})")
    s = read_json(run_dir / "summary.json")
    last = recs[-1]
    print(f"        {s['seconds']:.1f} s of {what} on {s['device']}; last iteration: proxy {last['proxy']:.3f}, "
          f"gold {last['gold']:.3f}, KL {last['kl']:.3f}")


def end_to_end(rep: Report, device: torch.device, tmp: Path, cpu_sft: Path, cpu_rm: Path, quick: bool,
               whole: bool | None = None) -> None:
    """``whole`` (default: on CUDA): every stage in every precision; otherwise the PPO stage from the CPU's models."""
    auto = autocast_dtype(device)
    if whole if whole is not None else device.type == "cuda":
        modes = ["auto", "fp32"] + (["fp16"] if auto == torch.bfloat16 else [])
        print(f"smoke pipeline end to end on {device} (mixed precision here: {auto})")
        for mode in modes:
            with precision(mode):
                label = {"auto": f"mixed ({str(autocast_dtype(device)).removeprefix('torch.')})", "fp32": "float32",
                         "fp16": "float16 + grad scaler"}[mode]
                t0 = time.perf_counter()
                run_dir = ppo.run_pipeline("smoke", tmp / f"e2e-{mode}", device=str(device), progress=False)
                print(f"        {label}: whole pipeline {time.perf_counter() - t0:.1f} s")
                finite_run(rep, run_dir, label, stages=True)
                # the critic-free trainer on the same stages
                run_dir = grpo.run_grpo_pipeline("smoke", tmp / f"e2e-{mode}", device=str(device), progress=False)
                finite_run(rep, run_dir, f"{label}, GRPO", stages=False, what="GRPO")
    else:
        modes = (("fp16", "float16 + grad scaler"),) if quick else (("bf16", "bfloat16"),
                                                                     ("fp16", "float16 + grad scaler"))
        print(f"smoke PPO stage on the CPU in {' and in '.join(m[1] for m in modes)} (CPU autocast: the "
              f"mixed-precision code paths)")
        for mode, label in modes:
            with precision(mode):
                run_dir = train_ppo(PRESETS["smoke"].ppo, tmp / f"e2e-{mode}" / "ppo", cpu_sft, cpu_rm,
                                    device="cpu", progress=False)
                grpo_dir = grpo.train_grpo(grpo.GRPO_PRESETS["smoke"].grpo, tmp / f"e2e-{mode}" / "grpo",
                                           cpu_sft, cpu_rm, device="cpu", progress=False)
            finite_run(rep, run_dir, label, stages=False)
            finite_run(rep, grpo_dir, f"{label}, GRPO", stages=False, what="GRPO")


# --------------------------------------------------------------------------------------------------
# 4. resume


def _numbers(rec, prefix=""):
    """Flatten a metrics record into ``{path: value}``, wall times left out."""
    if isinstance(rec, dict):
        out = {}
        for k, v in rec.items():
            if k not in WALL:
                out.update(_numbers(v, f"{prefix}/{k}"))
        return out
    if isinstance(rec, list):
        out = {}
        for i, v in enumerate(rec):
            out.update(_numbers(v, f"{prefix}[{i}]"))
        return out
    return {prefix: rec}


def resume(rep: Report, device: torch.device, tmp: Path, sft_dir: Path, rm_dir: Path,
           exact: bool | None = None) -> None:
    """``exact`` (default: on the CPU): bit for bit; otherwise deterministic algorithms and ``RESUME_RTOL``."""
    cfg = PRESETS["smoke"].ppo
    print(f"resume on {device}: stopped after 3 iterations and resumed, against an uninterrupted run")
    exact = device.type == "cpu" if exact is None else exact
    det = not exact
    if det:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        whole = train_ppo(cfg, tmp / "resume-whole", sft_dir, rm_dir, device=str(device), progress=False)
        cut = tmp / "resume-cut"
        try:
            train_ppo(cfg, cut, sft_dir, rm_dir, device=str(device), progress=False, stop_after=3)
            rep.check(False, "the interrupted run should have stopped")
        except RunInterrupted:
            pass
        train_ppo(cfg, cut, sft_dir, rm_dir, device=str(device), progress=False, resume=True)
    finally:
        if det:
            torch.use_deterministic_algorithms(False)
    a = [_numbers(r) for r in read_jsonl(whole / "metrics.jsonl")]
    b = [_numbers(r) for r in read_jsonl(cut / "metrics.jsonl")]
    if not rep.check(len(a) == len(b) == cfg.iterations and all(x.keys() == y.keys() for x, y in zip(a, b)),
                     f"resumed run logs {len(b)} iterations with the same fields as the uninterrupted one"):
        return
    texts_same = all(x[k] == y[k] for x, y in zip(a, b) for k in x if isinstance(x[k], str))
    worst = 0.0
    for x, y in zip(a, b):
        for k, v in x.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and y[k] is not None:
                worst = max(worst, abs(v - y[k]) / max(1.0, abs(v)))
            elif v != y[k] and not isinstance(v, str):
                worst = math.inf
    if exact:
        rep.check(texts_same and worst == 0.0, f"bit for bit (largest relative difference {worst:.1e})")
    else:
        rep.check(texts_same and worst <= RESUME_RTOL,
                  f"same sample texts, largest relative difference {worst:.1e} <= {RESUME_RTOL:g}"
                  + (" (bit for bit)" if worst == 0 else ""))


# --------------------------------------------------------------------------------------------------
# 5. speed of the full preset


def matmul_peak(device: torch.device, quick: bool) -> tuple[float, str]:
    """FLOP/s of a large square matmul: bfloat16 with CUDA events on CUDA, float32 on the CPU."""
    if device.type == "cuda":
        n, dtype, reps = 8192, torch.bfloat16, 20
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        best = math.inf
        for _ in range(3):  # best of three batches of reps
            start.record()
            for _ in range(reps):
                a @ b
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1000 / reps)
        return 2 * n ** 3 / best, "bfloat16"
    n, reps = (512, 5) if quick else (1024, 10)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times), "float32"


def full_trainer(device: torch.device, batch_size: int | None, compile: bool) -> PPOTrainer:
    """A trainer at the full preset's sizes, freshly initialized models (as ``benchmarks/ppo.py`` builds)."""
    preset, world = PRESETS["full"], World()
    cfg = preset.ppo if batch_size is None else replace(preset.ppo, batch_size=batch_size,
                                                        minibatches=min(preset.ppo.minibatches, batch_size))
    gcfg = preset.sft.gpt_config(world)
    torch.manual_seed(cfg.seed)
    reference = GPT(gcfg).to(device)
    policy = GPT(replace(gcfg, value_head=cfg.shared_value)).to(device)
    policy.load_state_dict(reference.state_dict(), strict=False)
    value_model = None if cfg.shared_value else GPT(replace(gcfg, value_head=True)).to(device)
    rm = RewardModel(gcfg).to(device)
    rm.requires_grad_(False)
    tok = world.tokenizer
    return PPOTrainer(cfg, policy, reference, rm, torch.as_tensor(world.prompts(), device=device), tok.eos_id,
                      tok.pad_id, value_model, compile=compile)


def time_full_ppo(rep: Report, device: torch.device, iterations: int, warmup: int, peak: float,
                  peak_dtype: str, batch_size: int | None, compile: bool) -> dict:
    label = "compiled" if compile else "eager"
    world = World()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t_build = time.perf_counter()
    t = full_trainer(device, batch_size, compile)
    P = t.prompts.shape[1]
    rows, first = [], None
    for i in range(warmup + iterations):
        sync(device)
        t0 = time.perf_counter()
        b = t.step()
        rec = ppo._metrics(i, t.cfg, world, b, P)  # the iteration as train_ppo runs it, metrics included
        sync(device)
        dt = time.perf_counter() - t0
        if i == 0:
            first = time.perf_counter() - t_build
        bad = [k for k in FINITE if not math.isfinite(rec[k])]
        if bad:
            rep.check(False, f"full preset ({label}) iteration {i}: non-finite {bad}")
        if i >= warmup:
            rows.append({**b.timings, "iteration": dt, "tokens": float(b.mask.sum()),
                         "length": float(b.mask.sum(1).float().mean())})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    # the update alone on the last batch: timed after a sync, and its matmul FLOPs counted
    upd = []
    for _ in range(3 if device.type == "cuda" else 1):
        sync(device)
        t0 = time.perf_counter()
        t.update(b)
        sync(device)
        upd.append(time.perf_counter() - t0)
    with FlopCounterMode(display=False) as fc:
        t.update(b)
    flops = fc.get_total_flops()
    t_upd = statistics.median(upd)
    out = {"label": label, "cfg": t.cfg, "params": count_parameters(t.policy), "first": first, **med,
           "update_alone": t_upd, "update_flops": flops, "peak_share": flops / t_upd / peak,
           "mem": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}
    c = t.cfg
    print(f"  full preset, {label}: {out['params']:,} parameters per model; {c.batch_size} episodes, "
          f"{c.minibatches} minibatches, {c.ppo_epochs} epochs; medians of {iterations} iterations after "
          f"{warmup} warm-up (first iteration incl. building{' and compiling' if compile else ''}: {first:.1f} s)")
    print(f"        {med['iteration']:.3f} s/iteration (rollout {med['time_rollout']:.3f} s, score "
          f"{med['time_score']:.3f} s, update {med['time_update']:.3f} s, the rest {med['iteration'] - med['time_iteration']:.3f} s); "
          f"{med['tokens'] / med['time_rollout']:,.0f} generated tokens/s ({med['length']:.1f} per response)")
    print(f"        update alone {t_upd:.3f} s, {flops / 1e9:.1f} GFLOP of matmuls: {flops / t_upd / 1e12:.2f} "
          f"TFLOP/s = {out['peak_share']:.1%} of the measured {peak_dtype} matmul peak"
          + (f"; peak device memory {out['mem'] / 2**20:,.0f} MiB" if out["mem"] is not None else ""))
    return out


# --------------------------------------------------------------------------------------------------
# 6. the full pipeline, extrapolated


def extrapolate(device: torch.device, tmp: Path, ppo_it: float, quick: bool) -> None:
    """Time short pieces of the full preset's SFT and reward-model stages and scale them to its counts."""
    full = PRESETS["full"]
    world = World()
    print(f"the full pipeline on {device}, extrapolated from short pieces (sizes from PRESETS['full'])"
          + (" -- --quick: batches reduced to 8, so these figures exercise the code, not the preset" if quick else ""))
    # corpus sampling (numpy, the CPU): per review
    n_s = 2000 if quick else 20_000
    t0 = time.perf_counter()
    world.sample(n_s, seed=1)
    per_review = (time.perf_counter() - t0) / n_s
    # SFT: two short runs differing only in their number of steps give the cost of a step
    k1, k2 = (1, 3) if quick else (10, 50)
    small = dict(n_reviews=2000, eval_reviews=200, warmup=1, **({"batch_size": 8} if quick else {}))
    secs = []
    for k in (k1, k2):
        d = train_sft(replace(full.sft, steps=k, **small), tmp / f"x-sft{k}", device=str(device), progress=False)
        secs.append(read_json(d / "summary.json")["train_seconds"])
    sft_step = max(0.0, (secs[1] - secs[0]) / (k2 - k1))
    sft_est = sft_step * full.sft.steps + per_review * (full.sft.n_reviews + full.sft.eval_reviews)
    # reward model: sampling per pair and training per step, from one short run with the full shapes
    reference = load_model(tmp / f"x-sft{k2}", device=device)
    n_pairs = 16 if quick else 2048
    rcfg = replace(full.reward_model, n_pairs=n_pairs, eval_pairs=max(16, n_pairs // 8), epochs=1,
                   **({"batch_size": 8} if quick else {}))
    d = train_reward_model(rcfg, reference, tmp / "x-rm", world=world, progress=False)
    s = read_json(d / "summary.json")
    per_pair = s["sample_seconds"] / (rcfg.n_pairs + rcfg.eval_pairs)
    rm_steps = math.ceil(rcfg.n_pairs / rcfg.batch_size)
    rm_step = (s["train_seconds"] - s["sample_seconds"]) / rm_steps  # training and evaluation, per step
    full_rm_steps = math.ceil(full.reward_model.n_pairs / full.reward_model.batch_size) * full.reward_model.epochs
    rm_est = per_pair * (full.reward_model.n_pairs + full.reward_model.eval_pairs) + rm_step * full_rm_steps
    ppo_est = ppo_it * full.ppo.iterations
    total = sft_est + rm_est + ppo_est
    rows = [("SFT", f"{sft_step * 1000:.1f} ms/step, {per_review * 1e6:.1f} us/review sampled",
             f"{full.sft.steps} steps, {full.sft.n_reviews:,} reviews", sft_est),
            ("reward model", f"{per_pair * 1000:.2f} ms/pair sampled, {rm_step * 1000:.1f} ms/step",
             f"{full.reward_model.n_pairs:,} pairs, {full_rm_steps} steps", rm_est),
            ("PPO", f"{ppo_it:.3f} s/iteration (upper bound: untrained models)",
             f"{full.ppo.iterations} iterations", ppo_est)]
    for name, unit, count, est in rows:
        print(f"        {name:<13} {unit:<52} x {count:<34} = {est:7.0f} s")
    print(f"        {'total':<13} {'':<52}   {'':<34} = {total:7.0f} s ({total / 60:.1f} min; target <= "
          f"{BUDGET_S / 60:.0f} min{'' if total <= BUDGET_S else ': the full preset needs resizing'})")
    left = BUDGET_S - sft_est - rm_est
    print(f"        PPO iterations that fit in {BUDGET_S / 60:.0f} min after SFT and the reward model: "
          f"{max(0, int(left / ppo_it)) if ppo_it > 0 else 0}. Not timed here: the critic-free (GRPO) stage "
          f"and the chapter's evaluations.")


# --------------------------------------------------------------------------------------------------


def cpu_reference(tmp: Path) -> tuple[Path, Path]:
    print("CPU reference: the smoke preset's reference and reward models, trained on the CPU in float32")
    t0 = time.perf_counter()
    with precision("fp32"):
        rm_dir = ensure_reward_model(PRESETS["smoke"].reward_model, PRESETS["smoke"].sft, tmp / "cpu",
                                     device="cpu", progress=False)
    print(f"        {time.perf_counter() - t0:.1f} s")
    return tmp / "cpu" / "sft", rm_dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the CPU parts only, small (for the test suite)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="timed full-preset iterations (default 10 on CUDA, 2 on the CPU)")
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                    help="also time the full preset with torch.compile (auto: on CUDA, not in --quick)")
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda") if cuda else torch.device("cpu")
    if cuda:
        name = torch.cuda.get_device_name()
        print(f"device: CUDA, {name}; torch {torch.__version__}; bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        print(f"no CUDA device here{' (or --quick)' if torch.cuda.is_available() else ''}: the CPU parts only, "
              f"with the CPU in the device's place; torch {torch.__version__}, {torch.get_num_threads()} threads")
    rep = Report()
    with tempfile.TemporaryDirectory(prefix="device_check-") as t:
        tmp = args.out or Path(t)
        cpu_sft, cpu_rm = cpu_reference(tmp)
        first_iteration(rep, cpu_sft, cpu_rm, device)
        end_to_end(rep, device, tmp, cpu_sft, cpu_rm, args.quick)
        if cuda:  # the device's own trained models
            dev_sft, dev_rm = tmp / "e2e-auto" / "sft", tmp / "e2e-auto" / "reward_model"
        else:
            dev_sft, dev_rm = cpu_sft, cpu_rm
        resume(rep, device, tmp, dev_sft, dev_rm)
        peak, peak_dtype = matmul_peak(device, args.quick)
        print(f"speed: {peak_dtype} matmul peak measured on {device}: {peak / 1e12:.2f} TFLOP/s")
        iterations = args.iterations or (10 if cuda else (1 if args.quick else 2))
        batch = 8 if args.quick else None  # --quick exercises the code; its figures mean nothing
        runs = [time_full_ppo(rep, device, iterations, 1 if not cuda else 2, peak, peak_dtype, batch, False)]
        compile = args.compile == "on" or (args.compile == "auto" and cuda)
        if compile:
            runs.append(time_full_ppo(rep, device, iterations, 2, peak, peak_dtype, batch, True))
            e, c = runs
            print(f"  torch.compile: {c['iteration']:.3f} s/iteration against {e['iteration']:.3f} eager "
                  f"({c['iteration'] / e['iteration'] - 1:+.0%}); update {c['update_alone']:.3f} s against "
                  f"{e['update_alone']:.3f} s; compiling cost {c['first'] - e['first']:.0f} s more")
        best = min(r["iteration"] for r in runs)
        extrapolate(device, tmp, best, quick=args.quick)
    total = time.perf_counter() - t_start
    print(f"device check: {total:.0f} s in all; " + (f"{len(rep.failures)} FAILED: {rep.failures}" if rep.failures
                                                     else "every check passed"))
    if not cuda:
        print("no CUDA: nothing above ran on a GPU")
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
