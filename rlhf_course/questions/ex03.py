"""Exercise 03: the RLHF objective, what beta trades, the divergence penalty as a trust region, the reference
model; and the graded core of each case study (book/03b_case_studies).

Covers seed cards 001 ("RLHF Policy Optimization Objective"), 002 ("Stabilizing Policy Updates with a Divergence
Penalty") and 003's questions on the objective, and the open-ended scenarios of cards 000 and 003 (one
multiple-choice question per case study). ``rlhf_course.seeds`` maps every card item to these ids.
"""
import numpy as np

from .._validate import as_float_array, check_finite, check_positive_scalar, check_same_shape
from .base import Case, Question, choice
from ..kl import kl_divergence, log_ratio
from ..objective import optimal_policy, rlhf_objective

# A one-prompt toy for the numeric questions: four responses, the last one overrated by the proxy reward.
# The exercise notebook imports these lists, so the question and its check read the same numbers.
TOY = {
    "ref": [0.60, 0.25, 0.13, 0.02],
    "proxy": [0.0, 1.0, 1.4, 2.6],
    "gold": [0.0, 1.0, 1.5, -1.0],
}
BETA_GRID = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
STRENGTHS = {"beta=3": 3.0, "beta=1": 1.0, "beta=0.1": 0.1}


def _gold_at(beta: float) -> float:
    return float((optimal_policy(np.array(TOY["ref"]), np.array(TOY["proxy"]), beta) * np.array(TOY["gold"])).sum())


def _best_beta() -> float:
    return max(BETA_GRID, key=_gold_at)


def _strength_labels() -> dict:
    """A: barely moves (smallest KL); C: exploits (largest KL); B: the best gold reward of the three."""
    ref, proxy = np.array(TOY["ref"]), np.array(TOY["proxy"])
    kls = {k: float(kl_divergence(optimal_policy(ref, proxy, b), ref)) for k, b in STRENGTHS.items()}
    golds = {k: _gold_at(b) for k, b in STRENGTHS.items()}
    low, high = min(kls, key=kls.get), max(kls, key=kls.get)
    best = max(golds, key=golds.get)
    if len({low, high, best}) != 3:
        raise RuntimeError("ex03: the toy's three beta values no longer show three distinct regimes")
    return {low: "A", best: "B", high: "C"}


def rlhf_loss(probs, ref_probs, rewards, beta):
    """``L(pi) = sum_y pi(y) (-r(y) + beta (log pi(y) - log pi_ref(y)))``: minus the RLHF objective."""
    return -rlhf_objective(probs, ref_probs, rewards, beta)


def penalized_reward(rewards, logp, ref_logp, beta):
    """``R = r - beta (log pi(y) - log pi_ref(y))``, per sampled response."""
    beta = check_positive_scalar(beta, "beta")
    r = as_float_array(rewards, "rewards")
    check_finite(r, "rewards")
    pen = log_ratio(logp, ref_logp)
    check_same_shape(r, pen, "rewards and logp")
    return r - beta * pen


def penalized_step(probs_old, advantages, step_penalty):
    """``pi_new = pi_old exp(A / step_penalty) / Z``: the maximizer of ``E_pi[A] - step_penalty KL(pi || pi_old)``."""
    return optimal_policy(probs_old, advantages, step_penalty)


def _hidden_rlhf_loss(rng) -> tuple[Case, ...]:
    from . import draws

    k, b = draws.size(rng, 3, 6), draws.size(rng, 2, 4)
    return (
        Case("random distributions, rewards and beta",
             (draws.probs(rng, (k,)), draws.probs(rng, (k,)), rng.normal(size=k), draws.positive(rng))),
        Case("a random batch of prompts: one loss per row",
             (draws.probs(rng, (b, k)), draws.probs(rng, (b, k)), rng.normal(size=(b, k)), draws.positive(rng))),
        Case("random pi with zeros: their terms contribute nothing",
             (draws.probs(rng, (b, k), zeros=True), draws.probs(rng, (b, k)), rng.normal(size=(b, k)),
              draws.positive(rng))),
        Case("a random beta <= 0 raises ValueError",
             (draws.probs(rng, (k,)), draws.probs(rng, (k,)), rng.normal(size=k), -float(rng.uniform(0, 1))),
             raises="ValueError"),
    )


def _hidden_penalized_reward(rng) -> tuple[Case, ...]:
    from . import draws

    n, b = draws.size(rng, 3, 7), draws.size(rng, 2, 3)
    return (
        Case("random rewards and log-probabilities",
             (rng.normal(size=n), draws.logps(rng, n), draws.logps(rng, n), draws.positive(rng))),
        Case("a random batch of samples",
             (rng.normal(size=(b, n)), draws.logps(rng, (b, n)), draws.logps(rng, (b, n)), draws.positive(rng))),
        Case("random shapes that do not match raise ValueError",
             (rng.normal(size=n), draws.logps(rng, n + 1), draws.logps(rng, n + 1), draws.positive(rng)),
             raises="ValueError"),
    )


def _hidden_exp_tilt(rng) -> tuple[Case, ...]:
    """Random instances of ``p exp(x / w) / Z`` (the penalized step of ex03, the optimal policy of ex04)."""
    from . import draws

    k, b = draws.size(rng, 3, 6), draws.size(rng, 2, 4)
    return (
        Case("random distribution, scores and weight",
             (draws.probs(rng, (k,)), rng.normal(size=k), draws.positive(rng))),
        Case("a random batch: one distribution per row",
             (draws.probs(rng, (b, k), zeros=True), rng.normal(size=(b, k)), draws.positive(rng))),
        Case("random scores / weight of order 1000: log space", (draws.probs(rng, (k,)),
                                                                rng.normal(0, 1000, k), draws.positive(rng, 0.5, 2)),
             atol=1e-12, hint="subtract the largest logit before exponentiating."),
        Case("a random weight <= 0 raises ValueError", (draws.probs(rng, (k,)), rng.normal(size=k),
                                                        -float(rng.uniform(0, 1))), raises="ValueError"),
    )


_PSTAR = optimal_policy(np.array([0.5, 0.3, 0.2]), np.array([1.0, 0.0, -1.0]), 1.0).tolist()


QUESTIONS = [
    # ---- the objective -------------------------------------------------------------------------------------
    Question(
        id="03.rlhf_loss",
        kind="function",
        points=3,
        title="the RLHF objective as a loss, E_pi[-r + beta (log pi - log pi_ref)]",
        reference=rlhf_loss,
        guards=("rlhf_course.questions.ex03.rlhf_loss", "rlhf_course.objective.rlhf_objective"),
        hidden=_hidden_rlhf_loss,
        cases=(
            Case("pi = pi_ref: the loss is -E[r]", ([0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 1.0)),
            Case("at the optimum of the toolchain example: -beta log Z", (_PSTAR, [0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 1.0),
                 rtol=1e-6),
            Case("a policy that has moved, beta = 0.1", ([0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [1.0, 0.0, 2.0], 0.1)),
            Case("a zero in pi contributes nothing", ([0.0, 0.5, 0.5], [0.2, 0.4, 0.4], [3.0, 1.0, 0.0], 0.5),
                 hint="terms with pi(y) = 0 contribute 0 (the limit of t log t), not nan."),
            Case("a batch of prompts: one loss per row", ([[0.5, 0.5], [0.9, 0.1]], [[0.5, 0.5], [0.5, 0.5]],
                                                          [[1.0, 0.0], [0.0, 1.0]], 0.3),
                 hint="reduce over the last axis only."),
            Case("pi puts mass where pi_ref has none: +inf", ([0.5, 0.5], [1.0, 0.0], [0.0, 0.0], 1.0),
                 hint="log pi_ref(y) = -inf there, so the penalty and the loss are +inf."),
            Case("beta = 0 is rejected", ([0.5, 0.5], [0.5, 0.5], [1.0, 0.0], 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
            Case("a negative beta is rejected", ([0.5, 0.5], [0.5, 0.5], [1.0, 0.0], -0.1), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
        ),
        hint="sum over the last axis of pi * (-r + beta * (log pi - log pi_ref)), skipping terms with pi = 0.",
    ),
    Question(
        id="03.penalized_reward",
        kind="function",
        points=2,
        title="the penalized reward r - beta (log pi - log pi_ref) of sampled responses",
        reference=penalized_reward,
        guards=("rlhf_course.questions.ex03.penalized_reward",),
        hidden=_hidden_penalized_reward,
        cases=(
            Case("policy and reference agree: R = r", ([1.5, -0.5], [-1.2, -0.3], [-1.2, -0.3], 0.2)),
            Case("responses the policy made more likely pay", ([2.0, 2.0], [-0.1, -2.0], [-3.0, -2.0], 0.5)),
            Case("a response the policy made less likely earns a bonus", ([0.0], [-3.0], [-1.0], 0.5),
                 hint="the per-sample penalty can be negative; keep its sign."),
            Case("a batch of 2 x 3 samples", ([[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]],
                                             [[-0.5, -1.0, -0.2], [-2.0, -0.1, -0.7]],
                                             [[-0.7, -0.9, -2.2], [-1.0, -0.1, -0.4]], 0.1)),
            Case("shapes that do not match", ([1.0, 2.0], [-0.5, -1.0, -0.1], [-0.5, -1.0, -0.1], 0.1),
                 raises="ValueError", hint="one reward per sample: mismatched shapes should raise ValueError."),
            Case("beta = 0 is rejected", ([1.0], [-0.5], [-0.7], 0.0), raises="ValueError",
                 hint="beta must be > 0: raise ValueError otherwise."),
        ),
        hint="rewards - beta * (logp - ref_logp), after checking beta > 0 and the shapes.",
    ),
    Question(
        id="03.components",
        kind="matching",
        points=3,
        title="each component of the objective and its role",
        name="component_roles",
        answer={"reward": "B", "beta": "D", "log_ratio": "E", "reference": "A", "expectation": "C"},
        choices=("reward", "beta", "log_ratio", "reference", "expectation"),
        hint="which term would you change to hold the policy closer to the SFT model, and which one is that model?",
    ),
    choice("03.score_use", "the most direct use of the reward model's score in one step", "score_use", "C", {
        "A": "The reward model is fixed during policy optimization; retraining it is a separate stage, not part of "
             "the step.",
        "B": "There is no gate: every sampled response contributes to the update, weighted by its penalized reward.",
        "D": "The reference is frozen for the whole run; updating it toward the policy would remove the anchor.",
    }),
    Question(
        id="03.loop_order",
        kind="ordering",
        points=2,
        title="the order of events in one iteration of policy learning",
        answer=["C", "E", "A", "D", "B"],
        choices=("A", "B", "C", "D", "E"),
        hint="a response must exist before it is scored, and the update needs the penalized reward.",
    ),
    Question(
        id="03.tradeoff",
        kind="value",
        points=2,
        title="the beta of a grid whose exact optimum has the best gold reward",
        name="best_beta",
        answer=_best_beta(),
        rtol=1e-9,
        hint="for each beta of BETA_GRID: p = optimal_policy(ref, proxy, beta), gold reward = (p * gold).sum().",
    ),
    Question(
        id="03.regularization_strength",
        kind="matching",
        points=3,
        title="three strengths of the KL penalty and their consequences",
        name="strength_regimes",
        answer=_strength_labels(),
        choices=tuple(STRENGTHS),
        hint="compute KL(pi*_beta || pi_ref) and the gold reward of pi*_beta for each of the three values.",
    ),
    choice("03.mediocre", "coherent, safe, mediocre: the likely cause", "mediocre_cause", "A", {
        "B": "A too-small beta lets the policy move far and earn high reward-model scores (often by exploiting the "
             "reward model), not mediocre ones.",
        "C": "Reward hacking shows as high reward-model scores with worse real quality; here the scores are mediocre.",
        "D": "A reference that follows the policy weakens the anchor: the symptom would be drift with high scores, "
             "not a policy stuck near the SFT model.",
    }),
    choice("03.reward_only", "reward only: repetitive, unnatural text", "reward_only_reason", "D", {
        "A": "A small learning rate slows all change down; it does not produce high scores with degenerate text.",
        "B": "An accurate reward model would not score repetitive, unnatural text highly; the objective found "
             "where the reward model is wrong.",
        "C": "This objective has no KL penalty at all; a strong one is what would keep the text natural.",
    }),
    choice("03.drift_fix", "drifting away from the SFT style: the specific fix", "drift_fix", "B", {
        "A": "Larger steps reach the drifted policy sooner; nothing in the objective changes.",
        "C": "More data of the same kind may improve the reward model, but nothing anchors the policy to the SFT "
             "model's style; the drift comes from the objective having no (or too weak a) penalty.",
        "D": "Sampling temperature changes decoding, not what the policy learned; the trained distribution has "
             "still drifted.",
    }),
    choice("03.omit_reference", "a trust region without a reference", "omit_reference", "C", {
        "A": "The trust region bounds each step, not the total: many small steps in the same direction go anywhere.",
        "B": "The step penalty still bounds each update, so training stays smooth; the failure is a slow, steady "
             "drift, not instability.",
        "D": "pi* = pi_ref exp(r / beta) / Z is defined by the reference; without it the fixed point of the "
             "iteration is the reward's maximizer.",
    }),
    choice("03.reference_role", "what the reference model is and what it is for", "reference_role", "A", {
        "B": "That is pi_old, the anchor of a trust region; the reference stays fixed for the whole run.",
        "C": "The reward model scores responses; the reference only supplies log pi_ref(y|x) for the penalty.",
        "D": "The penalty compares the policy with the reference on the policy's own samples; nothing imitates a "
             "teacher's outputs.",
    }),
    choice("03.modified_objective", "a loss with the penalty's sign flipped", "flipped_penalty", "D", {
        "A": "The flipped sign rewards divergence instead of charging for it: the optimum changes.",
        "B": "The reference maximizes nothing here; with +beta KL the objective is largest far from it.",
        "C": "E[r] + beta KL = E[r - beta log pi_ref] - beta H(pi) is convex in pi: it is maximized at a single "
             "response, not by spreading probability.",
    }),
    # ---- the divergence penalty as a trust region -------------------------------------------------------------
    choice("03.penalty_effect", "the effect of the -beta D(theta, theta_old) term", "penalty_effect", "B", {
        "A": "With a minus sign and D >= 0, divergence lowers J_new: the term discourages moving away from "
             "theta_old.",
        "C": "Only beta -> infinity pins theta to theta_old; a finite beta allows steps whose gain is worth their "
             "divergence.",
        "D": "The term changes what is optimal, not the scale of J's gradient.",
    }),
    choice(
        id="03.trust_region_tf",
        title="a larger penalty weight expands the trusted area: true or false?",
        name="larger_weight_expands",
        answer="B",
        choices=("A", "B"),
        feedback={"A": "A larger weight makes each unit of divergence cost more, so the maximizer moves less: the "
                       "step's KL is decreasing in the weight (the chapter's theorem), and the trusted region "
                       "shrinks."},
    ),
    Question(
        id="03.penalized_step",
        kind="function",
        points=2,
        title="the exact penalized update pi_old exp(A / step_penalty) / Z",
        reference=penalized_step,
        guards=("rlhf_course.questions.ex03.penalized_step", "rlhf_course.objective.optimal_policy"),
        hidden=_hidden_exp_tilt,
        cases=(
            Case("the toolchain example: pi_ref=[.5,.3,.2], A=[1,0,-1], step_penalty=1",
                 ([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 1.0)),
            Case("a large weight barely moves", ([0.5, 0.3, 0.2], [1.0, 0.0, -1.0], 100.0)),
            Case("a constant advantage changes nothing", ([0.1, 0.6, 0.3], [2.0, 2.0, 2.0], 0.5)),
            Case("a zero stays zero", ([0.0, 0.5, 0.5], [5.0, 0.0, 1.0], 0.5),
                 hint="pi_old(y) = 0 gives pi_new(y) = 0: multiply, do not add."),
            Case("large A / step_penalty: compute in log space", ([0.5, 0.5], [1000.0, 0.0], 1.0), atol=1e-12,
                 hint="exp(1000) overflows; subtract the maximum of log pi_old + A / step_penalty "
                      "before exponentiating."),
            Case("a batch of prompts", ([[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.0, 1.0]], 2.0)),
            Case("step_penalty = 0 is rejected", ([0.5, 0.5], [1.0, 0.0], 0.0), raises="ValueError",
                 hint="step_penalty must be > 0: raise ValueError otherwise."),
        ),
        hint="log pi_new = log pi_old + A / step_penalty - logsumexp(log pi_old + A / step_penalty) over the last axis.",
    ),
    choice("03.unstable_fix", "unstable, aggressive updates: the modification that constrains them", "unstable_fix",
          "D", {
              "A": "The KL penalty to the reference sets where training ends up; removing it does nothing to limit "
                   "one update, and removes the anchor.",
              "B": "An entropy bonus keeps the policy spread out; it does not limit how far one update moves it.",
              "C": "Scaling the reward up scales each update up, like a larger learning rate: worse, not better.",
          }),
    choice("03.choose_objective", "an objective for stable updates that still learns", "stable_objective", "A", {
        "B": "The plus sign rewards moving away from the current policy: larger steps, less stability.",
        "C": "A larger batch reduces noise, but nothing limits the step: an exact maximizer of J jumps straight to "
             "J's maximizer.",
        "D": "As lambda grows without bound the update returns pi_k itself: perfectly stable, and no learning.",
    }),
    # ---- case studies (book/03b_case_studies) -----------------------------------------------------------------
    choice("03.case_customer_facing", "case: repetitive praise after a config refactor", "case_customer_facing", "C", {
        "A": "The gold reward fell to its lowest value: the reward model overrates the response the policy chose.",
        "B": "The run is smooth: the reward rises and stays flat with small steps. Instability would show as jumps.",
        "D": "With beta = 0 the reference is not in the objective at all; another reference changes nothing.",
    }),
    choice("03.case_internal_job", "case: copied hyperparameters, a policy that barely moves", "case_internal_job",
          "A", {
              "B": "The logs are flat from iteration 20 to 60: the run has converged, to the optimum at beta = 5. "
                   "Training longer changes nothing.",
              "C": "At a smaller beta both the reward and the gold reward rise: the reward model carries signal.",
              "D": "Too small a beta shows as high reward and a large KL; here the KL is near zero.",
          }),
    choice("03.case_review", "case: a report whose KL is measured against the previous policy", "case_review", "B", {
        "A": "Many small steps in the same direction compound: their KLs sum to far less than the KL to the "
             "reference, which is several nats.",
        "C": "The estimator is not the issue; what the divergence is measured against is.",
        "D": "The reward model's score is exactly the quantity being over-optimized: its rise cannot reveal its "
             "own errors; the spot check (and the gold reward) can.",
    }),
    choice("03.case_instability", "case: a smaller batch, an erratic run", "case_instability", "D", {
        "A": "beta moves where training ends up, not how far one step goes; with the penalty in the update's "
             "reward, a larger beta even makes overshoot more likely.",
        "B": "Exploitation shows as a steady rise of the reward with a falling gold reward and a growing KL; here "
             "the reward jumps both ways and the steps are large.",
        "C": "Refreshing the reference removes the anchor; it does not limit the size of a step.",
    }),
    choice("03.case_conflicting_signals", "case: the reward model prefers B, the policy gives A more often",
          "case_conflicting_signals", "B", {
              "A": "The trained policy matches the exact optimum of the objective to many digits.",
              "C": "For these two responses the reward model's ranking agrees with the gold reward.",
              "D": "Backwards: ranking responses by reward alone needs beta -> 0, which would also rank the "
                   "flattery loop first.",
          }),
    choice("03.case_product_constraints", "case: a KL budget and a reward target", "case_product_constraints", "C", {
        "A": "Reward alone has the flattery loop as its optimum; where early stopping lands depends on step sizes "
             "and noise, not on a principled trade-off.",
        "B": "It meets the budget but gives away reward the budget allows: reward and KL both fall as beta grows.",
        "D": "It meets the legal constraint and ignores the product one; the beta at the budget improves reward "
             "at no cost to the constraint.",
    }),
    choice("03.case_blueprint", "case: a training blueprint for a regulated assistant", "case_blueprint", "A", {
        "B": "Reward alone drives the policy to what the reward model overrates; a filter afterwards removes some "
             "outputs but the auditable change in behaviour is unbounded.",
        "C": "A reference that follows the policy is no reference: the penalty of the sampling policy is zero, and "
             "the run drifts like one without a penalty.",
        "D": "The highest reward-model score is where over-optimization is furthest along; choose checkpoints by "
             "held-out human evaluation.",
    }),
    choice("03.case_reward_regresses", "case: reward up, behaviour down", "case_reward_regresses", "D", {
        "A": "Training longer moves further along the same path: the gold reward keeps falling.",
        "B": "A larger learning rate reaches the same bad optimum sooner.",
        "C": "A smaller beta moves the optimum further toward what the reward model overrates.",
    }),
    choice("03.case_post_deployment", "case: after deployment, one category regresses", "case_post_deployment", "B", {
        "A": "The weights did not change; the traffic did.",
        "C": "The opposite: for billing disputes the same beta buys the most divergence and the most flattery.",
        "D": "Nothing was trained after deployment; the policy is the same, evaluated on a different mix.",
    }),
    choice("03.case_hacking_spike", "case: a reward-hacking spike, and what caused it", "case_hacking_spike", "C", {
        "A": "On a log scale the flattery share grows steadily from iteration 20: nothing changed around 30.",
        "B": "The reward model is the same throughout; the spike follows from the objective with beta = 0.1.",
        "D": "A larger step penalty only slows the same takeover down; the destination is set by beta.",
    }),
    choice("03.case_training_failure", "case: a new loss, and a reward that falls", "case_training_failure", "A", {
        "B": "Exploitation raises the reward-model score; here it falls from the first iteration.",
        "C": "Too large a step makes the run jump around; this one falls steadily and settles.",
        "D": "Too large a beta keeps the policy near the reference with a reward near the reference's; here the "
             "reward falls well below it.",
    }),
    choice("03.case_reward_hacking", "case: diagnosing and mitigating reward hacking", "case_reward_hacking", "D", {
        "A": "A larger beta limits the damage but leaves the reward model's error in place: the overrated response "
             "keeps a share, and comes back whenever beta is lowered.",
        "B": "A smaller learning rate reaches the same optimum more slowly.",
        "C": "A real reward model has errors nobody has found yet; the KL penalty is what keeps the policy from "
             "finding them next.",
    }),
    choice("03.case_erratic", "case: a larger learning rate, a zig-zagging run", "case_erratic", "B", {
        "A": "A smaller beta does stop the overshoot, but it moves the destination: more divergence and more "
             "exploitation. It is not the change designed to limit each update.",
        "C": "The run zig-zags with an exact reward; noise only adds to it.",
        "D": "Without a step penalty each update jumps to the maximizer of its estimate: the extreme case of the "
             "problem.",
    }),
    choice("03.case_penalty_impact", "case: what the step penalty changes", "case_penalty_impact", "A", {
        "B": "All three runs end at the same policy: the step penalty does not change where training ends up.",
        "C": "A larger weight makes each update smaller, not larger.",
        "D": "Even with an exact reward the step penalty sets how far each update moves, and so the speed.",
    }),
    choice("03.case_undesirable", "case: what a repetitive policy is rewarded for", "case_undesirable", "B", {
        "A": "The policy sits at the optimum of the objective it was given: its implied reward gaps are the reward "
             "model's.",
        "C": "The reference gives the flattery loop about half a percent; the policy did not copy it from there.",
        "D": "The policy has converged: its implied reward equals the reward model's up to a constant.",
    }),
]
