"""A tiny GPT in one readable module: the policy, the reference model, and the trunk of the reward model.

Written in the manner of nanoGPT's ``model.py``: token and position embeddings, ``n_layer`` blocks of
(layer norm, causal self-attention, layer norm, MLP) with residual connections, a final layer norm, and
a language-model head that shares its weights with the token embedding. No dropout anywhere: PPO compares
log-probabilities of the same tokens computed at different times, and dropout would make them differ for
no reason (one of the published implementation details of RLHF with PPO).

Two additions for RLHF:

* an optional scalar **value head** on the same trunk, initialized to zero so that the value estimates
  start at exactly 0 and the first advantages are the rewards themselves;
* **sampling with a KV cache**: the keys and values of past positions are kept, so generating a token
  costs one position's forward pass, not the whole prefix's. :func:`generate` samples a batch of responses
  at a temperature ``tau`` and returns the log-probabilities of the sampled tokens under ``softmax(logits / tau)``,
  the same distribution :func:`response_logprobs` computes later from a full forward pass.

Tokens listed in ``GPTConfig.banned_tokens`` (the padding and ``<bos>`` tokens, unused ids) get logit
``-1e9``: the model never emits them, and every consumer (sampling, log-probabilities, the loss) sees the
same distribution.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._validate import check_config_ints

__all__ = ["GPTConfig", "GPT", "KVCache", "generate", "response_logprobs", "entropy_from_logits", "count_parameters",
           "CausalSelfAttention", "MLP", "Block"]

BANNED_LOGIT = -1e9  # finite, so that p log p is 0 rather than NaN for banned tokens


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a :class:`GPT`. ``value_head`` adds the scalar head; ``banned_tokens`` are never emitted."""

    vocab_size: int = 64
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    value_head: bool = False
    banned_tokens: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self):
        check_config_ints(self, "vocab_size", "block_size", "n_layer", "n_head", "n_embd")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        banned = tuple(int(t) for t in self.banned_tokens)
        if any(not 0 <= t < self.vocab_size for t in banned):
            raise ValueError(f"GPTConfig.banned_tokens must be ids in [0, {self.vocab_size}), got {banned}")
        if len(set(banned)) >= self.vocab_size:
            raise ValueError("GPTConfig.banned_tokens bans every token: nothing could be sampled")
        object.__setattr__(self, "banned_tokens", banned)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["banned_tokens"] = list(self.banned_tokens)
        return d


class KVCache:
    """Keys and values of the positions seen so far, per layer: ``(B, n_head, max_len, head_dim)`` each.

    Allocated at the first write, in the dtype the keys come in (float32, or half precision under autocast).
    """

    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is None:
            B, H, _, D = k.shape
            self.k[layer] = k.new_zeros(B, H, self.max_len, D)
            self.v[layer] = v.new_zeros(B, H, self.max_len, D)
        T = k.shape[2]
        self.k[layer][:, :, pos:pos + T] = k
        self.v[layer][:, :, pos:pos + T] = v
        return self.k[layer][:, :, :pos + T], self.v[layer][:, :, :pos + T]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # queries, keys and values in one product
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:  # store this step's keys and values, attend to all positions so far
            k, v = cache.update(layer, k, v, pos)
        if T > 1 and pos > 0:
            raise ValueError("a multi-token forward with a cache must start at position 0 (the prompt)")
        # T == 1 with a cache: the new query may see every cached position, no mask needed
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """A decoder-only transformer. ``forward(idx) -> (logits, values)``; ``values`` is None without a value head.

    ``logits`` are float32 ``(B, T, vocab)`` whatever the autocast precision (log-probabilities are always
    computed in float32); ``values`` are float32 ``(B, T)``: ``values[:, t]`` estimates the return of the
    state made of tokens ``0..t``.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        self.value_head = nn.Linear(cfg.n_embd, 1) if cfg.value_head else None
        banned = torch.zeros(cfg.vocab_size, dtype=torch.bool)
        banned[list(cfg.banned_tokens)] = True
        self.register_buffer("banned", banned, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale the residual projections by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if self.value_head is not None:  # V = 0 everywhere at the start
            nn.init.zeros_(self.value_head.weight)
            nn.init.zeros_(self.value_head.bias)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def new_cache(self, max_len: int) -> KVCache:
        """An empty key/value cache for sequences of up to ``max_len`` tokens."""
        if max_len > self.cfg.block_size:
            raise ValueError(f"sequence length {max_len} exceeds the model's block_size {self.cfg.block_size}")
        return KVCache(self.cfg.n_layer, max_len)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        """The trunk: final-layer-normed hidden states ``(B, T, n_embd)`` of tokens at positions ``pos..``."""
        B, T = idx.shape
        if pos + T > self.cfg.block_size:
            raise ValueError(f"positions up to {pos + T} exceed the model's block_size {self.cfg.block_size}")
        positions = torch.arange(pos, pos + T, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, pos)
        return self.ln_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits from hidden states, in float32, banned tokens at ``-1e9``."""
        return self.lm_head(h).float().masked_fill(self.banned, BANNED_LOGIT)

    def values(self, h: torch.Tensor) -> torch.Tensor:
        if self.value_head is None:
            raise ValueError("this GPT has no value head (GPTConfig.value_head=False)")
        return self.value_head(h).squeeze(-1).float()

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0):
        h = self.hidden(idx, cache, pos)
        return self.logits(h), (self.values(h) if self.value_head is not None else None)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


@torch.no_grad()
def generate(model: GPT, prompts: torch.Tensor, max_new_tokens: int, *, eos_id: int | None, pad_id: int,
             temperature: float = 1.0, generator: torch.Generator | None = None):
    """Sample one response per prompt with the KV cache; returns ``(tokens, mask, logprobs)``.

    ``prompts`` is ``(B, P)`` (all prompts the same length, no padding). Each step samples
    ``y_t ~ softmax(logits_t / T)`` by the Gumbel-max trick with uniforms drawn from ``generator`` on the
    CPU (so a run's random stream does not depend on the device). A response ends at its first ``<eos>``
    (``eos_id=None``: responses are always ``max_new_tokens`` long); later positions hold ``pad_id``.
    Returns ``tokens`` ``(B, P + max_new_tokens)``, the response ``mask``
    ``(B, max_new_tokens)`` (1 up to and including ``<eos>``), and ``logprobs`` ``(B, max_new_tokens)``,
    the sampled tokens' ``log softmax(logits / tau)`` (0 on padding).
    """
    temperature = _check_temperature(temperature)
    if prompts.dim() != 2 or prompts.dtype != torch.long:
        raise ValueError(f"prompts must be a (batch, length) long tensor, got {tuple(prompts.shape)} {prompts.dtype}")
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    was_training = model.training
    model.eval()
    B, P = prompts.shape
    device = prompts.device
    cache = model.new_cache(P + max_new_tokens)
    logits, _ = model(prompts, cache=cache, pos=0)
    next_logits = logits[:, -1]
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros(B, max_new_tokens, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # "has every response ended?" must reach the host each token (it decides whether more uniforms are drawn
    # from the generator). On CUDA it is copied asynchronously and read after the next token's forward pass
    # has been queued, so the GPU keeps working while Python waits; a forward pass made needless by an early
    # end is thrown away (it draws no random numbers). Elsewhere it is read at once.
    overlap = device.type == "cuda"
    if overlap:
        all_done, copied = torch.zeros((), dtype=torch.bool).pin_memory(), torch.cuda.Event()
    for t in range(max_new_tokens):
        u = torch.rand(next_logits.shape, generator=generator).clamp_(min=1e-20, max=1.0 - 1e-7)
        # pinned and non-blocking on CUDA: a plain copy from pageable memory would wait for the GPU's queue
        u = u.pin_memory().to(device, non_blocking=True) if overlap else u.to(device)
        gumbel = -torch.log(-torch.log(u))
        tok = torch.argmax(next_logits / temperature + gumbel, dim=-1)
        lp = _token_logprobs(next_logits, tok, temperature)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        out[:, t] = tok
        logps[:, t] = torch.where(done, torch.zeros_like(lp), lp)
        if eos_id is not None:
            done = done | (tok == eos_id)
        if t + 1 == max_new_tokens:
            break
        if overlap:
            all_done.copy_(done.all(), non_blocking=True)
            copied.record()
        elif bool(done.all()):
            break
        logits, _ = model(tok[:, None], cache=cache, pos=P + t)
        next_logits = logits[:, -1]
        if overlap:
            copied.synchronize()
            if bool(all_done):
                break
    model.train(was_training)
    steps = torch.arange(max_new_tokens, device=device)
    is_eos = out == (eos_id if eos_id is not None else -1)
    first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((B,), max_new_tokens, device=device))
    mask = (steps[None, :] <= first_eos[:, None]).float()
    return torch.cat([prompts, out], dim=1), mask, logps


def response_logprobs(model: GPT, tokens: torch.Tensor, prompt_len: int, temperature: float = 1.0,
                      with_entropy: bool = False):
    """One full forward pass over prompt and response: per-response-token log-probs, values, entropy.

    ``logprobs[:, t] = log softmax(logits / tau)[y_t]`` for response token ``t`` (predicted from position
    ``prompt_len - 1 + t``); ``values[:, t]`` is the value head at that same position, the state *before*
    token ``t`` (None without a value head); ``entropy[:, t]`` the entropy of ``softmax(logits / tau)`` there
    (None unless asked). All ``(B, R)`` with ``R = tokens.shape[1] - prompt_len``. No loop over tokens.
    """
    temperature = _check_temperature(temperature)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        raise ValueError(f"tokens must be a (B, T) tensor of token ids, got {getattr(tokens, 'shape', type(tokens))}")
    if not 1 <= prompt_len < tokens.shape[1]:
        raise ValueError(f"prompt_len must be in [1, {tokens.shape[1]}) (a response after it), got {prompt_len!r}")
    if tokens.numel() and not (0 <= int(tokens.min()) and int(tokens.max()) < model.cfg.vocab_size):
        raise ValueError(f"tokens must be ids in [0, {model.cfg.vocab_size}), got values from {int(tokens.min())} "
                         f"to {int(tokens.max())}")
    return _response_logprobs(model, tokens, prompt_len, temperature, with_entropy)


def _response_logprobs(model: GPT, tokens: torch.Tensor, prompt_len: int, temperature: float = 1.0,
                       with_entropy: bool = False):
    """:func:`response_logprobs` without its input checks (they read values back to the host, a sync per
    call on a GPU): the trainers' inner loops, whose tokens they sampled themselves."""
    logits, values = model(tokens)
    logits = logits[:, prompt_len - 1:-1]
    logp = _token_logprobs(logits, tokens[:, prompt_len:], temperature)
    vals = values[:, prompt_len - 1:-1] if values is not None else None
    ent = entropy_from_logits(logits, temperature) if with_entropy else None
    return logp, vals, ent


def _token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`rlhf_course.sequences.token_logprobs` on torch tensors, the same operations (bitwise equal),
    without its checks of the logits: those copy the ``(B, T, V)`` logits to numpy on every call."""
    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``H = -sum_v p_v log p_v`` of ``p = softmax(logits / tau)`` over the last axis."""
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)
