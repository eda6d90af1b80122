"""Exercise 07: reading a run, and finding silent bugs (book/07_diagnosing_runs).

One question per case study of the chapter (which metric, which cause, which fix), read from small metric
streams made by code (``rlhf_course.diagnose.example_log``: nothing trains here), and the "find the silent bug"
set: which of six trainer pieces has which bug, and the fixes of four of them as functions. Covers the
scenario titles of seed cards 000, 001 and 003 that chapter 7 redoes on real runs.

The references of the function questions call the package's own implementations; those that need torch
import it when called (``diagnose.correct_rewards``), never when this module is imported.
"""
from functools import partial

import numpy as np

from .. import diagnose
from . import draws
from .base import Case, Question, choice

# the answer of 07.k3_error, computed the way the question states it (float32, log r = 1e-4)
_K3_RATIO = float(diagnose.k3_estimate([-1e-4], [0.0])[0] / diagnose.correct_k3([-1e-4], [0.0])[0])

# 07.conflict_beta: the reference prefers B by this many nats, the reward model prefers A by this much
CONFLICT = {"ref_logodds_B_over_A": 2.3, "reward_gap_A_minus_B": 0.2}


_choice = partial(choice, points=1.0)  # this exercise's choices have always been worth 1.0 points


def _hidden_rewards(rng) -> tuple[Case, ...]:
    return (
        Case("a random padded batch: the score on each last real token, 0 on padding", draws.reward_inputs(rng)),
        Case("random full-length responses", draws.reward_inputs(rng, full=True)),
    )


def _hidden_mask(rng, eos: int = 2) -> tuple[Case, ...]:
    b, t = draws.size(rng, 3, 5), draws.size(rng, 4, 7)
    tokens = rng.integers(3, 9, (b, t))
    ends = rng.integers(0, t + 1, b)  # t: no end token in that row
    for i, e in enumerate(ends):
        if e < t:
            tokens[i, e:] = eos  # the end token, then padding with the end token itself
    zero_pad = tokens.copy()
    for i, e in enumerate(ends):
        if e + 1 < t:
            zero_pad[i, e + 1:] = 0
    return (
        Case("random responses padded with the end token", (tokens, eos),
             hint="only the first end token of a row belongs to the response."),
        Case("random responses padded with 0", (zero_pad, eos)),
    )


def _hidden_sampling(rng) -> tuple[Case, ...]:
    b, v = draws.size(rng, 2, 4), draws.size(rng, 4, 7)
    logits = rng.normal(0, 2, (b, v))
    k = draws.size(rng, 2, v - 1)
    top = np.argsort(-logits, axis=-1)[:, :k]
    inside = top[np.arange(b), rng.integers(0, k, b)]
    return (
        Case("random logits at a random temperature", (logits, rng.integers(0, v, b), draws.positive(rng, 0.3, 3.0),
                                                       None)),
        Case("random top-k sampling at a random temperature", (logits, inside, draws.positive(rng, 0.3, 3.0), k),
             hint="renormalize over the k most likely tokens."),
        Case("random tokens, some outside the top k: -inf", (logits, rng.integers(0, v, b), 1.0, k)),
    )


_REWARD_CASES = (
    Case("full-length responses", ([0.5, -1.0], [[-0.2, -1.1, -0.4], [-2.0, -0.3, -0.9]],
                                   [[-0.5, -0.9, -0.4], [-1.0, -0.3, -1.5]], [[1, 1, 1], [1, 1, 1]], 0.1)),
    Case("padded responses: the score goes on each one's last real token",
         ([0.7, -1.2, 2.0], [[-0.3, -1.2, -0.8, 0.0, 0.0], [-0.1, -0.4, -2.2, -0.6, -1.0], [-0.9, 0.0, 0.0, 0.0, 0.0]],
          [[-0.6, -1.0, -0.8, 0.0, 0.0], [-0.3, -0.4, -1.5, -0.9, -1.0], [-0.2, 0.0, 0.0, 0.0, 0.0]],
          [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], 0.2),
         hint="the last real token of row i is at index sum(mask[i]) - 1, not at the last column."),
    Case("the penalty's sign: moving away from the reference costs reward",
         ([0.0], [[-0.1, -0.1]], [[-2.0, -3.0]], [[1, 1]], 0.5),
         hint="r_t = -beta (logp_t - ref_logp_t): where the policy is more likely than the reference, the penalty "
              "is negative."),
    Case("beta = 0: the score alone", ([1.5, 0.5], [[-1.0, -1.0], [-1.0, 0.0]], [[-3.0, -1.0], [-2.0, 0.0]],
                                       [[1, 1], [1, 0]], 0.0)),
    Case("a response with no token", ([1.0], [[0.0, 0.0]], [[0.0, 0.0]], [[0, 0]], 0.1), raises="ValueError",
         hint="a response needs at least one real token to receive its score: raise ValueError otherwise."),
)

_MASK_CASES = (
    Case("responses that end, padded", ([[5, 6, 2, 0, 0], [7, 2, 0, 0, 0]], 2)),
    Case("padding with the end token itself", ([[5, 6, 2, 2, 2], [7, 2, 2, 2, 2]], 2),
         hint="only the first end token of a row belongs to the response; everything after it is padding."),
    Case("a response cut off without an end token", ([[5, 6, 7, 8], [5, 2, 9, 9]], 2),
         hint="no end token: every position is part of the response."),
    Case("an end token first", ([[2, 0, 0], [2, 2, 2]], 2)),
)

_LOGIT_ROWS = [[2.0, 1.0, 0.5, -1.0, -3.0], [0.0, 0.3, -0.2, 1.2, 0.1], [1.5, 1.5, -0.5, 0.0, 2.5]]
_SAMPLING_CASES = (
    Case("plain sampling (T = 1, no top-k)", (_LOGIT_ROWS, [0, 3, 4], 1.0, None)),
    Case("temperature 0.7", (_LOGIT_ROWS, [1, 3, 0], 0.7, None),
         hint="the tokens came from softmax(logits / T): use the same T for their log-probabilities."),
    Case("temperature 1.6", (_LOGIT_ROWS, [4, 2, 2], 1.6, None)),
    Case("top-2 sampling", (_LOGIT_ROWS, [1, 3, 4], 1.0, 2),
         hint="top-k samples from the k most likely tokens, renormalized: their log-probabilities are higher "
              "than under the full softmax."),
    Case("top-3 at temperature 0.5", (_LOGIT_ROWS, [0, 4, 1], 0.5, 3)),
    Case("a token top-k could not have sampled", (_LOGIT_ROWS, [4, 3, 4], 1.0, 2),
         hint="a token outside the top k has probability 0 under the sampling distribution: log-probability -inf."),
)

QUESTIONS = [
    Question(
        id="07.read_logs", kind="matching", points=2, title="four runs, read from their logs",
        name="log_kinds", answer={"log_1": "B", "log_2": "D", "log_3": "C", "log_4": "A"},
        choices=("log_1", "log_2", "log_3", "log_4"),
        hint="look at the gold reward against the proxy, the KL to the reference, and the approximate KL of the "
             "updates; the detectors of rlhf_course.diagnose read them for you.",
    ),
    _choice("07.case_instability", "case: a larger learning rate, a run that breaks", "case_instability", "B", {
        "A": "The gold reward falls with the proxy here, not against it, and the reward model is not involved: the "
             "sign of exploitation is a proxy that keeps rising while the gold reward falls, with calm updates.",
        "C": "The entropy falls in every run that learns; it is not what spikes first, and an entropy bonus does "
             "not bound the size of an update.",
        "D": "The value loss spikes after the policy jumped, as a consequence: the returns it fits changed. The "
             "policy's updates are what the approximate KL and the clip fraction measure.",
    }),
    _choice("07.case_hacking_spike", "case: a reward-hacking spike, and its root cause", "case_hacking_spike", "C", {
        "A": "The update at the spike is an ordinary one (approximate KL and clip fraction at their usual values): the "
             "optimizer did what it was asked. A smaller learning rate reaches the same place later.",
        "B": "The reward model is frozen during PPO; nothing about it changed at the spike. What changed is the text "
             "it was asked to score.",
        "D": "The value head affects the variance of the updates, not what they optimize; the proxy reward itself "
             "says the policy found text the reward model scores highly.",
    }),
    _choice("07.case_reward_regresses", "case: reward up, behaviour down, which knob", "case_reward_regresses", "D", {
        "A": "The updates are already small (approximate KL around 0.01): a smaller learning rate makes the run travel "
             "along the same path to the same place, as the chapter's two beta = 0.05 runs show.",
        "B": "Clip range and epochs bound the size of each step, like the learning rate: they change at most when the "
             "regression comes, not whether.",
        "C": "A penalty on a symptom moves the optimum to the nearest place without the symptom: in the chapter the "
             "policy learned to end the same degenerate strings with an end token.",
    }),
    _choice("07.case_conflicting_signals", "case: the reward model prefers A, the policy writes B",
            "case_conflicting_signals", "B", {
                "A": "PPO's optimum under the KL penalty is pi_ref exp(r / beta) / Z: a policy that keeps the "
                     "reference's strong preference for B at beta = 0.5 is doing what the objective asks.",
                "C": "Nothing says the reward model is wrong here; the policy was never meant to rank responses by "
                     "reward alone.",
                "D": "Backwards: a larger beta pulls the policy toward the reference, whose preference is B; the "
                     "reward model's ranking wins as beta becomes small.",
            }),
    Question(
        id="07.conflict_beta", kind="value", points=2,
        title="the beta below which the optimal policy prefers the reward model's choice", name="beta_flip",
        answer=CONFLICT["reward_gap_A_minus_B"] / CONFLICT["ref_logodds_B_over_A"], rtol=1e-3,
        hint="log pi*(A) / pi*(B) = log pi_ref(A) / pi_ref(B) + (r(A) - r(B)) / beta; set it to 0 and solve for beta.",
    ),
    _choice("07.case_post_deployment", "case: after deployment, ratings fall while the RM score holds",
            "case_post_deployment", "B", {
                "A": "Nothing was trained after deployment: the weights are those that passed the evaluation. The "
                     "traffic changed.",
                "C": "The KL penalty holds the policy near the reference on the prompts it was trained on; on prompts "
                     "it never saw, a larger beta teaches it nothing, and the reward model would still misjudge them.",
                "D": "The reward model is good on the prompts it was trained on (it agrees with the ratings there); "
                     "its failure is on the new prompts, which more or less training on the old data does not fix.",
            }),
    _choice("07.case_product_constraints", "case: an objective under a KL budget", "case_product_constraints", "C", {
        "A": "Reward alone has no term that knows about the budget: where it is stopped depends on step sizes and "
             "noise, and between checks the KL can pass any budget (the chapter's beta = 0.05 run reaches tens of "
             "nats).",
        "B": "It meets the budget with a wide margin and gives away the quality the budget allows.",
        "D": "The fixed beta with the best gold reward is over the budget: the regulator's constraint is not a "
             "preference to trade against reward.",
    }),
    _choice("07.case_blueprint", "case: a training blueprint for a regulated assistant", "case_blueprint", "A", {
        "B": "Reward alone drives the policy to what the reward model overrates, and the checkpoint with the highest "
             "reward-model score is where that has gone furthest; a filter afterwards does not bound the change.",
        "C": "A reference that follows the policy is no reference: the KL to it stays small while the policy drifts "
             "as far as it likes from the approved model.",
        "D": "The penalty constrains the policy on the training prompts only, and an unmonitored deployment is where "
             "the drift case happened.",
    }),
    Question(
        id="07.silent_bugs", kind="matching", points=6, title="six trainer pieces, one bug each",
        name="bug_of_piece",
        answer={"piece_1": "D", "piece_2": "E", "piece_3": "B", "piece_4": "F", "piece_5": "A", "piece_6": "C"},
        choices=("piece_1", "piece_2", "piece_3", "piece_4", "piece_5", "piece_6"),
        hint="run each piece on a small input where the right answer is known, next to the correct function of the "
             "package (rlhf_course.rl.kl_penalized_rewards, rlhf_course.sequences.token_logprobs, rlhf_course.kl.k3).",
    ),
    _choice("07.bug_symptom", "what the temperature bug looks like in a run's log", "temperature_symptom", "B", {
        "A": "If the reference is scored the same (wrong) way as the policy, their log-ratio is still 0 at the start: "
             "the KL to the reference starts at zero either way.",
        "C": "The entropy is computed from the logits; nothing in this bug makes it zero.",
        "D": "Every number stays finite: that is what makes the bug silent.",
    }),
    Question(
        id="07.fix_rewards", kind="function", points=3, title="per-token rewards, both bugs fixed",
        name="per_token_rewards_fixed", reference=diagnose.correct_rewards, cases=_REWARD_CASES,
        guards=("rlhf_course.diagnose.correct_rewards", "rlhf_course.rl.kl_penalized_rewards",
                "rlhf_course.questions.ex06.per_token_rewards_reference"),
        hidden=_hidden_rewards,
        hint="r_t = -beta (logp_t - ref_logp_t) on every real token, plus the score on each response's last real "
             "token; 0 on padding.",
    ),
    Question(
        id="07.fix_mask", kind="function", points=2, title="the response mask when padding may be the end token",
        name="response_mask_fixed", reference=diagnose.correct_response_mask, cases=_MASK_CASES,
        guards=("rlhf_course.diagnose.correct_response_mask",), hidden=_hidden_mask,
        hint="1 up to and including each row's first end token, 0 after it; a row with no end token is all 1.",
    ),
    Question(
        id="07.fix_sampling_logprobs", kind="function", points=3,
        title="log-probabilities of the distribution the tokens were sampled from", name="sampling_logprobs",
        reference=diagnose.correct_sampling_logprobs, cases=_SAMPLING_CASES,
        guards=("rlhf_course.diagnose.correct_sampling_logprobs", "rlhf_course.diagnose.topk_logits"),
        hidden=_hidden_sampling,
        hint="log_softmax(logits / T) gathered at the tokens, with every logit outside the top k set to -inf first.",
    ),
    Question(
        id="07.k3_error", kind="value", points=1, title="how wrong the naive k3 is in float32 at log r = 1e-4",
        name="k3_ratio", answer=_K3_RATIO, rtol=0.02,
        hint="compute both forms with float32 numpy: x = np.float32(1e-4); naive = np.exp(x) - 1 - x; "
             "stable = np.expm1(x) - x.",
    ),
]
