"""Stage 1 of chapter 6: the reference model, a tiny GPT trained from scratch on reviews of the world.

In real RLHF this is the pretrained and supervised-fine-tuned model; here it is trained by maximum
likelihood on a corpus sampled from :class:`rlhf_course.world.World`. Because the world's probabilities are
exact, how well the model learned the language is measured exactly too: the KL divergence from the world to
the model, ``E_{y ~ world}[log p_world(y) - log p_model(y)]``, in nats per review.

``rlhf-course sft --preset default --out DIR`` writes ``DIR/sft/``: ``config.json``, ``model.pt``,
``metrics.jsonl`` and ``summary.json``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._validate import check_config_ints
from .device import pick_device
from .gpt import GPT, GPTConfig
from .runs import (append_jsonl, autocast, check_same_config, config_dict, grad_scaler, make_run_dir, read_json,
                   save_atomic, scaled_step, write_json)
from .world import World

__all__ = ["SFTConfig", "PRESETS", "model_config", "train_sft", "load_model", "ensure_sft", "world_kl",
           "lm_loss", "sequence_logprob", "add_arguments", "run"]

PRESET_NAMES = ("smoke", "default", "full")


def model_config(world: World, n_layer: int, n_head: int, n_embd: int, block_size: int = 64,
                 vocab_size: int = 64, value_head: bool = False) -> GPTConfig:
    """A GPT shape for the world's language: ``<pad>``, ``<bos>`` and unused ids are banned from output."""
    tok = world.tokenizer
    if vocab_size < len(tok):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the world's vocabulary ({len(tok)})")
    banned = (tok.pad_id, tok.bos_id, *range(len(tok), vocab_size))
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     value_head=value_head, banned_tokens=banned)


@dataclass(frozen=True)
class SFTConfig:
    """Training the reference model: model shape, corpus size, optimization (AdamW, cosine schedule)."""

    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    n_reviews: int = 40_000
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 0.01
    eval_reviews: int = 2000
    seed: int = 0

    def __post_init__(self):
        check_config_ints(self, "n_layer", "n_head", "n_embd", "block_size", "n_reviews", "steps", "batch_size",
                          "eval_reviews")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ValueError(f"SFTConfig.lr must lie in (0, 1), got {self.lr!r}")
        if not (isinstance(self.warmup, int) and 0 <= self.warmup <= self.steps):
            raise ValueError(f"SFTConfig.warmup must be an integer in [0, steps={self.steps}], got {self.warmup!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"SFTConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.block_size < 16:
            raise ValueError(f"SFTConfig.block_size must be >= 16 to hold a review, got {self.block_size}")
        model_config(World(), self.n_layer, self.n_head, self.n_embd, self.block_size)  # validates the shape

    def gpt_config(self, world: World, value_head: bool = False) -> GPTConfig:
        return model_config(world, self.n_layer, self.n_head, self.n_embd, self.block_size, value_head=value_head)


PRESETS = {
    "smoke": SFTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, n_reviews=2000, steps=40, batch_size=32,
                       lr=3e-3, warmup=5, eval_reviews=200),
    "default": SFTConfig(),
    "full": SFTConfig(n_layer=4, n_head=8, n_embd=256, n_reviews=400_000, steps=6000, batch_size=256, lr=1e-3,
                      warmup=200, eval_reviews=10_000),
}


def _corpus(world: World, n: int, block_size: int, seed: int) -> np.ndarray:
    tokens, _ = world.sample(n, seed=seed)
    lengths = (tokens != world.tokenizer.pad_id).sum(1)
    tokens = tokens[lengths <= block_size]  # reviews longer than the model's context are left out
    return tokens[:, :block_size]


def _lr(step: int, cfg: SFTConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_loss(model: GPT, batch: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy over the real tokens of a padded batch (padding targets ignored)."""
    n = int((batch != pad_id).sum(1).max())
    batch = batch[:, :n]
    logits, _ = model(batch[:, :-1])
    targets = batch[:, 1:].masked_fill(batch[:, 1:] == pad_id, -100)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


@torch.no_grad()
def sequence_logprob(model: GPT, tokens: torch.Tensor, pad_id: int, batch_size: int = 512) -> torch.Tensor:
    """``log p_model`` of each whole row (``<bos>`` excluded, ``<eos>`` included), float64 ``(B,)``."""
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        b = tokens[i:i + batch_size]
        n = int((b != pad_id).sum(1).max())
        b = b[:, :n]
        logits, _ = model(b[:, :-1])
        lp = torch.log_softmax(logits, -1).gather(-1, b[:, 1:, None]).squeeze(-1)
        out.append((lp * (b[:, 1:] != pad_id)).sum(1).cpu().double())  # float64 on the CPU (MPS has none)
    return torch.cat(out)


def world_kl(model: GPT, world: World, n: int = 2000, seed: int = 12345) -> dict:
    """``KL(world || model)`` over whole reviews, estimated on ``n`` fresh reviews with exact world log-probs.

    Returns nats per review and per token, and the world's own entropy per review for scale.
    """
    device = next(model.parameters()).device
    tokens, _ = world.sample(n, seed=seed)
    tokens = tokens[(tokens != world.tokenizer.pad_id).sum(1) <= model.cfg.block_size][:, :model.cfg.block_size]
    lp_world = world.log_prob(tokens)
    lp_model = sequence_logprob(model, torch.as_tensor(tokens, device=device), world.tokenizer.pad_id).numpy()
    n_tok = ((tokens != world.tokenizer.pad_id).sum(1) - 1).mean()
    kl = float(np.mean(lp_world - lp_model))
    return {"kl_per_review": kl, "kl_per_token": kl / float(n_tok), "world_entropy_per_review": float(-lp_world.mean()),
            "tokens_per_review": float(n_tok)}


def train_sft(cfg: SFTConfig, out: str | Path, device: str = "auto", world: World | None = None,
              progress: bool = True) -> Path:
    """Train the reference model; writes ``out/config.json``, ``model.pt``, ``metrics.jsonl``, ``summary.json``."""
    world = world or World()
    dev = pick_device(device)
    out = make_run_dir(out)
    write_json(out / "config.json", config_dict(cfg))
    (out / "metrics.jsonl").unlink(missing_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.gpt_config(world)).to(dev)
    corpus = torch.as_tensor(_corpus(world, cfg.n_reviews, cfg.block_size, cfg.seed), device=dev)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    scaler = grad_scaler(dev)
    pad = world.tokenizer.pad_id
    bar = tqdm(range(cfg.steps), desc="sft", disable=not progress, leave=False)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        idx = torch.randint(0, corpus.shape[0], (cfg.batch_size,), generator=gen).to(dev)
        with autocast(dev):
            loss = lm_loss(model, corpus[idx], pad)
        scaled_step(loss, opt, scaler, model.parameters(), 1.0)
        if step % 20 == 0 or step == cfg.steps - 1:
            append_jsonl(out / "metrics.jsonl", {"step": step, "loss": loss.item(), "lr": _lr(step, cfg)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_time = time.perf_counter() - t0
    model.eval()
    save_atomic({"gpt_config": model.cfg.to_dict(), "state_dict": model.state_dict()}, out / "model.pt")
    summary = {"device": str(dev), "train_seconds": train_time,
               "parameters": sum(p.numel() for p in model.parameters()),
               "corpus_reviews": int(corpus.shape[0]), **world_kl(model, world, cfg.eval_reviews)}
    write_json(out / "summary.json", summary)
    return out


def load_model(path: str | Path, device: str | torch.device = "cpu", value_head: bool | None = None) -> GPT:
    """A GPT saved by a stage (``model.pt``); ``value_head=True`` adds a fresh zero-initialized value head."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: run the stage that makes it first")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = GPTConfig(**{**blob["gpt_config"], "banned_tokens": tuple(blob["gpt_config"]["banned_tokens"])})
    if value_head is not None:
        cfg = replace(cfg, value_head=value_head)
    model = GPT(cfg)
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    allowed = {"value_head.weight", "value_head.bias"}
    if set(missing) - allowed or set(unexpected) - allowed:
        raise ValueError(f"{path} does not match the model shape: missing {missing}, unexpected {unexpected}")
    return model.to(pick_device(device) if isinstance(device, str) else device)


def ensure_sft(cfg: SFTConfig, out: str | Path, device: str = "auto", progress: bool = True) -> Path:
    """``out`` holding a finished reference model made with ``cfg``: reused if present, trained if not."""
    out = Path(out)
    if (out / "summary.json").exists():
        check_same_config(out / "config.json", cfg, "reference model")
        return out
    return train_sft(cfg, out, device=device, progress=progress)


# --------------------------------------------------------------------------------------------------
# command line: rlhf-course sft


def add_arguments(parser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="default", help="model and training size")
    parser.add_argument("--out", required=True, help="run folder; the model goes to OUT/sft")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")


def run(args) -> int:
    try:
        pick_device(args.device)
        out = make_run_dir(args.out)
        path = ensure_sft(PRESETS[args.preset], out / "sft", device=args.device)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    s = read_json(path / "summary.json")
    print(f"reference model in {path}: {s['parameters']} parameters, trained in {s['train_seconds']:.1f} s on "
          f"{s['device']}; KL(world || model) = {s['kl_per_review']:.3f} nats per review")
    return 0
