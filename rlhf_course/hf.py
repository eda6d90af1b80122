"""The bridge to Hugging Face: the course's models and tokenizer as Transformers objects, and back.

The course's :class:`~rlhf_course.gpt.GPT` is GPT-2 shaped: token and position embeddings, pre-norm blocks
(LayerNorm eps 1e-5, causal attention with one packed ``c_attn``, an MLP with exact GELU), a final
LayerNorm and a head tied to the token embedding. So the weights map one to one onto
``transformers.GPT2LMHeadModel``; the only change is a transpose, because GPT-2's ``Conv1D`` stores its
weight as ``(in, out)`` where ``nn.Linear`` stores ``(out, in)``.

    to_transformers(gpt)        -> GPT2LMHeadModel           (policy / reference)
    to_transformers_value(gpt)  -> GPT2ForTokenClassification (trunk + value head: values[:, t] = V(s_t))
    to_transformers_reward(rm)  -> GPT2RewardModel           (a sequence-score model, score = RewardModel's)
    to_transformers_tokenizer() -> PreTrainedTokenizerFast   (the world's words, same ids, pad and eos)
    from_transformers(model)    -> GPT                       (the inverse of to_transformers)
    export(run_dir, out_dir)                                  (``rlhf-course export RUN_DIR --out HF_DIR``)

One difference is by design, not by accident. The course's GPT gives its *banned* tokens (``<pad>``,
``<bos>``, unused ids) the logit ``-1e9`` inside the model. GPT-2 has no such mask: the exported model's
logits equal the course's on every allowed token, and on banned ones they are the plain products
``h . w_v``. Generation is kept identical through the exported ``generation_config.suppress_tokens``
(Transformers sets those logits to ``-inf`` before sampling); a trainer that computes log-probabilities
from raw logits (TRL does) normalizes over the banned tokens too: its log-probabilities are the course's
plus ``log(1 - m)``, with ``m`` the exported model's probability of the banned tokens (:func:`banned_mass`).

This module is the only one in the package that imports ``transformers``; nothing else imports it, so the
course runs without the ``hf`` extra (``pip install "rlhf-course[hf]"``).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from transformers import (AutoConfig, AutoModelForSequenceClassification, GenerationConfig, GPT2Config,
                          GPT2ForTokenClassification, GPT2LMHeadModel, GPT2Model, GPT2PreTrainedModel,
                          PreTrainedTokenizerFast)
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

from .gpt import GPT, GPTConfig
from .reward_model import RewardModel
from .world import BOS, EOS, PAD, Tokenizer

__all__ = ["gpt2_config", "to_transformers", "from_transformers", "to_transformers_value",
           "to_transformers_reward", "from_transformers_reward", "RewardModelHFConfig", "GPT2RewardModel",
           "to_transformers_tokenizer", "banned_mass", "export",
           "add_arguments", "run"]

# GPT-2's Conv1D layers, whose weights are stored transposed relative to nn.Linear
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_BANNED_KEY = "rlhf_course_banned_tokens"  # extra field of the exported config.json


def _check_gpt(gpt) -> GPT:
    if not isinstance(gpt, GPT):
        raise TypeError(f"expected a rlhf_course.gpt.GPT, got {type(gpt).__name__}")
    return gpt


def gpt2_config(cfg: GPTConfig, tokenizer: Tokenizer | None = None, **extra) -> GPT2Config:
    """The ``GPT2Config`` of a :class:`GPTConfig`: same shape, exact GELU, LayerNorm eps 1e-5, no dropout.

    The special-token ids are the world's (``tokenizer``, default the world's word tokenizer); the banned
    tokens travel in the config as ``rlhf_course_banned_tokens`` so that :func:`from_transformers` restores
    them.
    """
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"expected a GPTConfig, got {type(cfg).__name__}")
    tok = tokenizer or Tokenizer()
    if len(tok) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(tok)} tokens, more than the model's vocab_size {cfg.vocab_size}")
    return GPT2Config(
        vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.n_embd,
        activation_function="gelu",  # the course's F.gelu is the exact (erf) GELU; "gelu_new" is the tanh one
        layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
        scale_attn_weights=True, tie_word_embeddings=True,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
        **{_BANNED_KEY: list(cfg.banned_tokens)}, **extra)


def _trunk_to_gpt2(gpt: GPT, prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """The trunk's weights under GPT-2's names (``Conv1D`` weights transposed)."""
    out = {}
    for name, t in gpt.state_dict().items():
        if name.startswith(("lm_head.", "value_head.")):
            continue
        theirs = name.replace("blocks.", "h.", 1)
        if name.endswith(".weight") and any(f".{c}." in name for c in _CONV1D):
            t = t.t()  # Conv1D stores (in, out)
        out[prefix + theirs] = t.detach().clone().contiguous()
    return out


def _gpt2_to_trunk(state: dict[str, torch.Tensor], prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """The inverse of :func:`_trunk_to_gpt2`: GPT-2's trunk weights under the course's names."""
    out = {}
    for name, t in state.items():
        if not name.startswith(prefix):
            continue
        ours = name[len(prefix):]
        if ours.startswith("h."):
            ours = "blocks." + ours[2:]
        if ours.endswith(".weight") and any(f".{c}." in ours for c in _CONV1D):
            t = t.t()
        out[ours] = t.detach().clone().contiguous()
    return out


def _load_exact(model: nn.Module, state: dict[str, torch.Tensor], allowed_missing: tuple[str, ...] = ()) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m not in allowed_missing]
    if missing or unexpected:
        raise ValueError(f"weights do not map one to one: missing {missing}, unexpected {unexpected}")


def to_transformers(gpt: GPT, tokenizer: Tokenizer | None = None) -> GPT2LMHeadModel:
    """``GPT2LMHeadModel`` with the same weights: ``logits_hf = logits`` on every token the GPT does not ban.

    The value head (if any) is not part of a causal LM; export it with :func:`to_transformers_value`.
    """
    gpt = _check_gpt(gpt)
    model = GPT2LMHeadModel(gpt2_config(gpt.cfg, tokenizer))
    _load_exact(model, _trunk_to_gpt2(gpt), allowed_missing=("lm_head.weight",))  # tied to wte
    model.tie_weights()
    model.generation_config = _generation_config(gpt.cfg, tokenizer)
    return model.eval()


def _generation_config(cfg: GPTConfig, tokenizer: Tokenizer | None) -> GenerationConfig:
    tok = tokenizer or Tokenizer()
    # suppress_tokens: the banned tokens never come out of generate(), as with the course's sampler
    return GenerationConfig(bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
                            do_sample=True, suppress_tokens=list(cfg.banned_tokens) or None)


def from_transformers(model: GPT2LMHeadModel, value_model: GPT2ForTokenClassification | None = None) -> GPT:
    """The course's :class:`GPT` from a GPT-2 model (the inverse of :func:`to_transformers`).

    ``value_model`` (from :func:`to_transformers_value`) adds its head as the GPT's value head; its trunk
    must equal ``model``'s (the course's value head shares the policy's trunk).
    """
    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(f"expected a transformers GPT2LMHeadModel, got {type(model).__name__}")
    c = model.config
    if c.activation_function != "gelu" or abs(c.layer_norm_epsilon - 1e-5) > 1e-12 or \
            (c.n_inner not in (None, 4 * c.n_embd)) or not c.tie_word_embeddings:
        raise ValueError("only GPT-2 models shaped like the course's GPT convert exactly: activation 'gelu', "
                         "layer_norm_epsilon 1e-5, n_inner 4*n_embd, tied embeddings")
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, value_head=value_model is not None,
                    banned_tokens=tuple(getattr(c, _BANNED_KEY, None) or ()))
    gpt = GPT(cfg)
    state = _gpt2_to_trunk(model.state_dict())
    if value_model is not None:
        if not isinstance(value_model, GPT2ForTokenClassification) or value_model.config.num_labels != 1:
            raise TypeError("value_model must be a GPT2ForTokenClassification with num_labels=1")
        v_state = value_model.state_dict()
        if any(not torch.equal(t, v_state[k]) for k, t in model.state_dict().items() if k.startswith("transformer.")):
            raise ValueError("value_model's trunk differs from model's: the course's value head shares the trunk")
        state["value_head.weight"] = v_state["classifier.weight"].clone()
        state["value_head.bias"] = v_state["classifier.bias"].clone()
    _load_exact(gpt, state, allowed_missing=("lm_head.weight",))
    return gpt.eval()


def to_transformers_value(gpt: GPT, tokenizer: Tokenizer | None = None) -> GPT2ForTokenClassification:
    """The trunk and value head as ``GPT2ForTokenClassification`` (one label): ``logits[..., 0] = values``."""
    gpt = _check_gpt(gpt)
    if gpt.value_head is None:
        raise ValueError("this GPT has no value head (GPTConfig.value_head=False)")
    model = GPT2ForTokenClassification(gpt2_config(gpt.cfg, tokenizer, num_labels=1, classifier_dropout=0.0))
    state = _trunk_to_gpt2(gpt)
    state["classifier.weight"] = gpt.value_head.weight.detach().clone()
    state["classifier.bias"] = gpt.value_head.bias.detach().clone()
    _load_exact(model, state)
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# The reward model: a sequence-score model. GPT2ForSequenceClassification reads the last token only and has
# no bias, while the course's reward model pools the response ("last", "mean" or "sum") and applies the fixed
# normalization gain * raw + bias: a small GPT-2 subclass holds exactly that.


class RewardModelHFConfig(GPT2Config):
    """``GPT2Config`` plus the course reward model's pooling, normalization and the prompt length."""

    model_type = "rlhf_course_reward"

    def __init__(self, pooling: str = "last", gain: float = 1.0, score_bias: float = 0.0, prompt_len: int = 4,
                 **kwargs):
        super().__init__(**kwargs)
        self.pooling, self.gain, self.score_bias, self.prompt_len = pooling, gain, score_bias, prompt_len


class GPT2RewardModel(GPT2PreTrainedModel):
    """``r(x, y) = gain * pool_t(w . h_t + b) + bias`` over the response's tokens, as :class:`RewardModel`.

    ``forward(input_ids, attention_mask=None, response_mask=None)``: the response is ``response_mask``
    (``(B, T - prompt_len)``, 1 up to its last real token) or, if not given, the positions from
    ``config.prompt_len`` on where ``attention_mask`` is 1 (right padding). Returns ``logits`` ``(B, 1)``.
    """

    config_class = RewardModelHFConfig

    def __init__(self, config: RewardModelHFConfig):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = nn.Linear(config.n_embd, 1)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                response_mask: torch.Tensor | None = None, **kwargs) -> SequenceClassifierOutputWithPast:
        P = self.config.prompt_len
        if response_mask is None:
            am = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            response_mask = am[:, P:]
        response_mask = response_mask.to(torch.float32)
        # no attention mask into the trunk: causal attention, and real tokens never look at the padding after
        h = self.transformer(input_ids=input_ids).last_hidden_state
        per_token = self.score(h[:, P:]).squeeze(-1).float()
        if self.config.pooling == "last":
            last = (response_mask.sum(1).long() - 1).clamp(min=0)
            raw = per_token[torch.arange(input_ids.shape[0], device=input_ids.device), last]
        else:
            total = (per_token * response_mask).sum(1)
            raw = total if self.config.pooling == "sum" else total / response_mask.sum(1).clamp(min=1)
        score = self.config.gain * raw + self.config.score_bias
        return SequenceClassifierOutputWithPast(logits=score[:, None])


AutoConfig.register(RewardModelHFConfig.model_type, RewardModelHFConfig, exist_ok=True)
AutoModelForSequenceClassification.register(RewardModelHFConfig, GPT2RewardModel, exist_ok=True)


def to_transformers_reward(rm: RewardModel, prompt_len: int = 4,
                           tokenizer: Tokenizer | None = None) -> GPT2RewardModel:
    """The course's :class:`RewardModel` as a sequence-score model with the same score (``logits[:, 0]``).

    Loadable with ``AutoModelForSequenceClassification`` once ``rlhf_course.hf`` is imported (it registers
    the class). ``prompt_len`` is where responses start when no ``response_mask`` is passed (the world's
    prompts are 4 tokens).
    """
    if not isinstance(rm, RewardModel):
        raise TypeError(f"expected a rlhf_course.reward_model.RewardModel, got {type(rm).__name__}")
    if isinstance(prompt_len, bool) or not isinstance(prompt_len, int) or prompt_len < 1:
        raise ValueError(f"prompt_len must be a positive integer, got {prompt_len!r}")
    base = gpt2_config(rm.trunk.cfg, tokenizer).to_dict()
    for k in ("model_type", "transformers_version", "architectures"):
        base.pop(k, None)
    config = RewardModelHFConfig(pooling=rm.pooling, gain=float(rm.gain), score_bias=float(rm.bias),
                                 prompt_len=prompt_len, num_labels=1, **base)
    model = GPT2RewardModel(config)
    state = _trunk_to_gpt2(rm.trunk, prefix="transformer.")
    state["score.weight"] = rm.head.weight.detach().clone()
    state["score.bias"] = rm.head.bias.detach().clone()
    _load_exact(model, state)
    return model.eval()


def from_transformers_reward(model: GPT2RewardModel) -> RewardModel:
    """The course's :class:`RewardModel` from :func:`to_transformers_reward`'s model."""
    if not isinstance(model, GPT2RewardModel):
        raise TypeError(f"expected a GPT2RewardModel, got {type(model).__name__}")
    c = model.config
    cfg = GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer, n_head=c.n_head,
                    n_embd=c.n_embd, banned_tokens=tuple(getattr(c, _BANNED_KEY, None) or ()))
    rm = RewardModel(cfg, c.pooling)
    _load_exact(rm.trunk, _gpt2_to_trunk(model.state_dict()), allowed_missing=("lm_head.weight",))
    with torch.no_grad():
        rm.head.weight.copy_(model.score.weight)
        rm.head.bias.copy_(model.score.bias)
        rm.gain.fill_(c.gain)
        rm.bias.fill_(c.score_bias)
    return rm.eval()


# ----------------------------------------------------------------------------------------------------
# The tokenizer


def to_transformers_tokenizer(tokenizer: Tokenizer | None = None) -> PreTrainedTokenizerFast:
    """The world's word-level tokenizer as a ``PreTrainedTokenizerFast``: same ids, ``<pad>``, ``<bos>``, ``<eos>``.

    Words are split on whitespace; ``tok("the food was")["input_ids"] == Tokenizer().encode("the food was")``
    (``<bos>`` is added as the course's ``encode`` adds it; ``add_special_tokens=False`` leaves it out).
    An unknown word is an error, as in the course's tokenizer. Decoding joins words with spaces.
    """
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import models, pre_tokenizers, processors

    tok = tokenizer or Tokenizer()
    if not isinstance(tok, Tokenizer):
        raise TypeError(f"expected a rlhf_course.world.Tokenizer, got {type(tok).__name__}")
    raw = RawTokenizer(models.WordLevel(vocab=dict(tok.index), unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B",
                                                       special_tokens=[(BOS, tok.bos_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   padding_side="right", model_max_length=10_000)
    return fast


# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def banned_mass(gpt: GPT, tokens: torch.Tensor) -> torch.Tensor:
    """``sum_{v banned} p_hf(v | prefix)`` at each position: what the exported model gives the banned tokens.

    ``p_hf`` is the softmax of the exported model's logits (GPT-2 has no banned-token mask). The exported
    model's log-probability of an allowed token is the course's plus ``log(1 - banned_mass)``.
    """
    gpt = _check_gpt(gpt)
    h = gpt.hidden(tokens)
    logp = torch.log_softmax(gpt.lm_head(h).float(), dim=-1)
    if not gpt.cfg.banned_tokens:
        return torch.zeros(logp.shape[:-1])
    return logp[..., list(gpt.cfg.banned_tokens)].exp().sum(-1)


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the model of a course run as a Transformers folder (safetensors, config, tokenizer).

    ``run_dir`` is a stage folder: ``sft`` (``model.pt``), ``reward_model`` (``model.pt`` with a pooling),
    or a PPO/GRPO run (``checkpoint.pt``). A policy becomes a ``GPT2LMHeadModel`` (and, if it has a value
    head, ``out_dir/value_model`` a ``GPT2ForTokenClassification``); a reward model a
    :class:`GPT2RewardModel`. ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained(out_dir)`` load
    the policy offline.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a folder: give a run's stage folder (sft, reward_model, or a run)")
    tokenizer = to_transformers_tokenizer()
    out_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "checkpoint.pt").exists():
        from .ppo import load_policy

        gpt = load_policy(run_dir)
    elif (run_dir / "model.pt").exists():
        blob = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
        if "pooling" in blob:
            from .reward_model import load_reward_model

            model = to_transformers_reward(load_reward_model(run_dir))
            model.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)
            return out_dir
        from .sft import load_model

        gpt = load_model(run_dir)
    else:
        raise ValueError(f"{run_dir} holds no course model (model.pt or checkpoint.pt): is the stage finished?")
    gpt.eval()
    to_transformers(gpt).save_pretrained(out_dir)  # the value head, if any, is left out of the LM
    tokenizer.save_pretrained(out_dir)
    if gpt.value_head is not None:
        to_transformers_value(gpt).save_pretrained(out_dir / "value_model")
        tokenizer.save_pretrained(out_dir / "value_model")
    return out_dir


# ----------------------------------------------------------------------------------------------------
# command line: rlhf-course export


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a stage folder of a course run: OUT/sft, OUT/reward_model, or a "
                                        "PPO/GRPO run folder (OUT/ppo-beta0.3, ...)")
    parser.add_argument("--out", required=True, help="folder to write the Transformers model and tokenizer to")


def run(args) -> int:
    try:
        out = export(args.run_dir, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"exported to {out}: load it with AutoModelForCausalLM.from_pretrained({str(out)!r}) "
          f"(or AutoModelForSequenceClassification after `import rlhf_course.hf` for a reward model)")
    return 0
