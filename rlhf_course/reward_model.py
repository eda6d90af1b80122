"""Stage 2 of chapter 6: the proxy reward model, learned from noisy preferences between pairs of responses.

The reference model answers each prompt twice; a labeller prefers one of the two with the Bradley-Terry
probability of the *gold* reward,

    P(y_a preferred to y_b | x) = sigmoid((gold(x, y_a) - gold(x, y_b)) / tau),

so close pairs are labelled nearly at random and the labels are noisy, as human labels are. The reward
model, a tiny GPT trunk (initialized from the reference model) with a scalar head on every response token whose
outputs are summed over the response's real tokens (``pooling="sum"``, the default; ``"last"`` reads the head
at the last real token only, its ``<eos>`` or its last token when it was cut off; ``"mean"`` averages), is
trained by minimizing the Bradley-Terry loss ``-log sigmoid(r(x, y_chosen) - r(x, y_rejected))``. After training its scores are
shifted and scaled to mean 0 and standard deviation 1 on the reference model's samples (a detail of the
published implementations: the policy's rewards start on a known scale).

It sees only what the reference model writes. On such text it agrees with the gold reward well; on text the
reference model never writes it extrapolates, and nothing checks it there. That is what PPO finds.

``rlhf-course reward-model --preset default --out DIR`` writes ``DIR/reward_model/`` (and ``DIR/sft/`` first,
when it is missing).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._validate import check_config_ints
from .device import pick_device
from .gpt import GPT, GPTConfig, generate
from .rl import last_token_index
from .runs import (append_jsonl, autocast, check_same_config, config_dict, grad_scaler, make_run_dir, read_json,
                   save_atomic, scaled_step, write_json)
from .sft import PRESET_NAMES
from .sft import PRESETS as SFT_PRESETS
from .sft import SFTConfig, ensure_sft, load_model
from .world import World

__all__ = ["RewardModel", "RewardModelConfig", "PRESETS", "train_reward_model", "load_reward_model",
           "ensure_reward_model", "sample_responses",
           "gold_of", "score_batched", "add_arguments", "run"]


POOLINGS = ("last", "mean", "sum")


class RewardModel(nn.Module):
    """``r(x, y)``: a GPT trunk, a linear head ``w . h_t + c`` pooled over the response, and a fixed affine
    normalization ``gain * raw + bias`` set after training.

    ``pooling``: ``"last"``, the head at the response's last real token; ``"sum"``, ``sum_t m_t (w . h_t + c)``
    over its real tokens (the default of :class:`RewardModelConfig`); ``"mean"``, that sum over the length.
    The constructor's default ``"last"`` is what a saved model without a ``pooling`` entry was trained with."""

    def __init__(self, cfg: GPTConfig, pooling: str = "last"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.trunk = GPT(cfg)
        self.head = nn.Linear(cfg.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(cfg.n_embd + 1))
        nn.init.zeros_(self.head.bias)
        self.register_buffer("gain", torch.ones(()))
        self.register_buffer("bias", torch.zeros(()))

    def raw(self, tokens: torch.Tensor, mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        """Unnormalized scores ``(B,)`` of prompt+response ``tokens`` with response ``mask``."""
        h = self.trunk.hidden(tokens)
        if self.pooling == "last":
            last = prompt_len + last_token_index(mask)
            return self.head(h[torch.arange(tokens.shape[0], device=tokens.device), last]).squeeze(-1).float()
        per_token = self.head(h[:, prompt_len:]).squeeze(-1).float()
        per_token = torch.where(mask.bool(), per_token, torch.zeros_like(per_token))
        total = per_token.sum(1)
        return total if self.pooling == "sum" else total / mask.sum(1).clamp(min=1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
        return self.gain * self.raw(tokens, mask, prompt_len) + self.bias


@dataclass(frozen=True)
class RewardModelConfig:
    """Preference data (pairs sampled from the reference model, labels from the gold reward with noise
    ``label_temperature``) and Bradley-Terry training. ``pooling`` is how the head's per-token outputs make one
    score (:class:`RewardModel`): summed over the response's real tokens by default."""

    n_pairs: int = 6000
    eval_pairs: int = 1000
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    label_temperature: float = 0.2
    max_new_tokens: int = 16
    temperature: float = 1.0
    pooling: str = "sum"
    seed: int = 1

    def __post_init__(self):
        check_config_ints(self, "n_pairs", "eval_pairs", "epochs", "batch_size", "max_new_tokens")
        for name in ("lr", "label_temperature", "temperature"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"RewardModelConfig.{name} must be a finite number > 0, got {v!r}")
        if self.lr >= 1:
            raise ValueError(f"RewardModelConfig.lr must be < 1, got {self.lr}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"RewardModelConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")


PRESETS = {
    "smoke": RewardModelConfig(n_pairs=256, eval_pairs=64, epochs=1, batch_size=32, lr=1e-3, max_new_tokens=8),
    "default": RewardModelConfig(),
    "full": RewardModelConfig(n_pairs=50_000, eval_pairs=5000, epochs=2, batch_size=64, lr=5e-5),
}


@torch.no_grad()
def sample_responses(model: GPT, world: World, n: int, max_new_tokens: int, temperature: float,
                     generator: torch.Generator, batch_size: int = 512, prompt_idx: np.ndarray | None = None):
    """``n`` responses of ``model`` to prompts of the world: ``(tokens, mask)`` on the model's device."""
    device = next(model.parameters()).device
    prompts_all = torch.as_tensor(world.prompts())
    if prompt_idx is None:
        prompt_idx = torch.randint(0, prompts_all.shape[0], (n,), generator=generator)
    prompts = prompts_all[torch.as_tensor(prompt_idx)].to(device)
    toks, masks = [], []
    for i in range(0, n, batch_size):
        t, m, _ = generate(model, prompts[i:i + batch_size], max_new_tokens, eos_id=world.tokenizer.eos_id,
                           pad_id=world.tokenizer.pad_id, temperature=temperature, generator=generator)
        toks.append(t)
        masks.append(m)
    return torch.cat(toks), torch.cat(masks)


def gold_of(world: World, tokens: torch.Tensor, prompt_len: int) -> np.ndarray:
    return world.gold_reward(tokens.cpu().numpy(), prompt_len)


@torch.no_grad()
def score_batched(rm: RewardModel, tokens: torch.Tensor, mask: torch.Tensor, prompt_len: int,
                  batch_size: int = 512) -> torch.Tensor:
    dev = next(rm.parameters()).device
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        with autocast(dev):
            out.append(rm(tokens[i:i + batch_size], mask[i:i + batch_size], prompt_len).float())
    return torch.cat(out)


def train_reward_model(cfg: RewardModelConfig, reference: GPT, out: str | Path, world: World | None = None,
                       progress: bool = True) -> Path:
    """Sample pairs from ``reference``, label them, train the reward model; writes ``out/model.pt`` etc."""
    world = world or World()
    dev = next(reference.parameters()).device
    out = make_run_dir(out)
    write_json(out / "config.json", config_dict(cfg))
    (out / "metrics.jsonl").unlink(missing_ok=True)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(cfg.seed)
    n = cfg.n_pairs + cfg.eval_pairs
    P = world.prompts().shape[1]
    # two responses to each prompt
    prompt_idx = torch.randint(0, world.prompts().shape[0], (n,), generator=gen)
    tok_a, mask_a = sample_responses(reference, world, n, cfg.max_new_tokens, cfg.temperature, gen,
                                     prompt_idx=prompt_idx)
    tok_b, mask_b = sample_responses(reference, world, n, cfg.max_new_tokens, cfg.temperature, gen,
                                     prompt_idx=prompt_idx)
    gold_a, gold_b = gold_of(world, tok_a, P), gold_of(world, tok_b, P)
    p_a = 1.0 / (1.0 + np.exp(-(gold_a - gold_b) / cfg.label_temperature))
    u = torch.rand(n, generator=gen).numpy()
    a_wins = torch.as_tensor(u < p_a, device=dev)
    chosen = torch.where(a_wins[:, None], tok_a, tok_b), torch.where(a_wins[:, None], mask_a, mask_b)
    rejected = torch.where(a_wins[:, None], tok_b, tok_a), torch.where(a_wins[:, None], mask_b, mask_a)
    sample_seconds = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    rm = RewardModel(reference.cfg, cfg.pooling).to(dev)
    rm.trunk.load_state_dict(reference.state_dict())
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = grad_scaler(dev)
    train = torch.arange(cfg.n_pairs)
    steps_per_epoch = math.ceil(cfg.n_pairs / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    bar = tqdm(total=total, desc="reward model", disable=not progress, leave=False)
    step = 0
    for epoch in range(cfg.epochs):
        perm = train[torch.randperm(cfg.n_pairs, generator=gen)].to(dev)
        for i in range(0, cfg.n_pairs, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            toks = torch.cat([chosen[0][idx], rejected[0][idx]])
            masks = torch.cat([chosen[1][idx], rejected[1][idx]])
            for g in opt.param_groups:
                g["lr"] = cfg.lr * (1 - step / total)
            with autocast(dev):
                r = rm.raw(toks, masks, P)
            r_c, r_r = r[:len(idx)], r[len(idx):]
            loss = -F.logsigmoid(r_c - r_r).mean()
            scaled_step(loss, opt, scaler, rm.parameters(), 1.0)
            if step % 20 == 0:
                append_jsonl(out / "metrics.jsonl", {"step": step, "epoch": epoch, "loss": loss.item(),
                                                     "accuracy": (r_c > r_r).float().mean().item()})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    rm.eval()
    # normalize on the reference model's samples: mean 0, standard deviation 1
    all_tok = torch.cat([tok_a[:cfg.n_pairs], tok_b[:cfg.n_pairs]])
    all_mask = torch.cat([mask_a[:cfg.n_pairs], mask_b[:cfg.n_pairs]])
    raw = score_batched(rm, all_tok, all_mask, P)
    rm.gain.fill_(1.0 / raw.std().clamp(min=1e-6).item())
    rm.bias.fill_(-raw.mean().item() / raw.std().clamp(min=1e-6).item())
    # held-out agreement
    ev = slice(cfg.n_pairs, n)
    s_c = score_batched(rm, chosen[0][ev], chosen[1][ev], P).cpu().numpy()
    s_r = score_batched(rm, rejected[0][ev], rejected[1][ev], P).cpu().numpy()
    g_a, g_b = gold_a[ev], gold_b[ev]
    s_a = score_batched(rm, tok_a[ev], mask_a[ev], P).cpu().numpy()
    s_b = score_batched(rm, tok_b[ev], mask_b[ev], P).cpu().numpy()
    decided = np.abs(g_a - g_b) > 1e-6
    gold_agree = float(np.mean(np.sign(s_a - s_b)[decided] == np.sign(g_a - g_b)[decided]))
    scores, golds = np.concatenate([s_a, s_b]), np.concatenate([g_a, g_b])
    save_atomic({"gpt_config": reference.cfg.to_dict(), "pooling": cfg.pooling, "state_dict": rm.state_dict()},
                out / "model.pt")
    summary = {
        "device": str(dev), "train_seconds": time.perf_counter() - t0, "sample_seconds": sample_seconds,
        "label_accuracy": float(np.mean(s_c > s_r)),
        "gold_agreement": gold_agree,
        "gold_correlation": float(np.corrcoef(scores, golds)[0, 1]),
        "label_gold_agreement": float(np.mean((a_wins[ev].cpu().numpy() == (g_a > g_b))[decided])),
        "reference_gold_mean": float(np.mean(np.concatenate([gold_a, gold_b]))),
    }
    write_json(out / "summary.json", summary)
    return out


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no reward model at {path}: run `rlhf-course reward-model` first")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = GPTConfig(**{**blob["gpt_config"], "banned_tokens": tuple(blob["gpt_config"]["banned_tokens"])})
    rm = RewardModel(cfg, blob.get("pooling", "last"))
    rm.load_state_dict(blob["state_dict"])
    rm.eval()
    return rm.to(pick_device(device) if isinstance(device, str) else device)


def ensure_reward_model(cfg: RewardModelConfig, sft_cfg: SFTConfig, out: str | Path, device: str = "auto",
                        progress: bool = True) -> Path:
    """``out/reward_model`` made with ``cfg`` from ``out/sft``: reused if present; missing stages are run."""
    out = Path(out)
    sft_dir = ensure_sft(sft_cfg, out / "sft", device=device, progress=progress)
    rm_dir = out / "reward_model"
    if (rm_dir / "summary.json").exists():
        check_same_config(rm_dir / "config.json", cfg, "reward model")
        return rm_dir
    reference = load_model(sft_dir, device=device)
    reference.eval()
    return train_reward_model(cfg, reference, rm_dir, progress=progress)


# --------------------------------------------------------------------------------------------------
# command line: rlhf-course reward-model


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default", help="data and training size")
    parser.add_argument("--out", required=True, help="run folder; the reward model goes to OUT/reward_model "
                                                     "(and the reference model to OUT/sft, trained first if missing)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")


def run(args) -> int:
    try:
        pick_device(args.device)
        out = make_run_dir(args.out)
        path = ensure_reward_model(PRESETS[args.preset], SFT_PRESETS[args.preset], out, device=args.device)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    s = read_json(path / "summary.json")
    print(f"reward model in {path}: trained in {s['train_seconds']:.1f} s on {s['device']}; held-out pairs: "
          f"{s['label_accuracy']:.1%} agreement with the noisy labels, {s['gold_agreement']:.1%} with the gold "
          f"reward's ordering")
    return 0
