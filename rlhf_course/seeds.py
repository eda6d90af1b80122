"""The course's seed cards, item by item: where each is taught and where it is graded.

Five seed cards (``tests/seeds/*.txt``) started the course. Each names a main concept or question (its title and
text) and lists related items under ``Related``, ``Learn Before`` and ``Learn After``: concepts, questions, and
titles of open-ended scenarios (some cut short with "..." in the card; they are kept exactly as written). This
module holds, as data, every item of every card with

* its **kind**: ``"concept"``, ``"question"`` (a question asked in the card) or ``"scenario"`` (the title of an
  open-ended exercise or case study);
* the book page that **teaches** it, as listed in ``_toc.yml`` (e.g. ``"book/03_objective"``);
* the **graded** question ids (``rlhf_course.questions``) that check it: at least one for every question and
  scenario.

:data:`ITEMS` maps a short key to an :class:`Item`; :data:`CARDS` gives, for each card file and section, the keys
of its items in the card's order. A key written ``"+key"`` is an item the card prints on the same line as the one
before it, with no line break (card 002 glues a title to the end of a question). Joining a section's items with
line breaks (and glued ones with nothing) gives back the card's text of that section exactly, which is what
``tests/test_seed_map.py`` checks with :func:`parse_card`; the appendix page "Seed map" renders :func:`table_rows`.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("concept", "question", "scenario")
HEADERS = ("Learn Before", "Related", "Learn After", "Tags")  # the section headers a card can have
SECTIONS = ("head", "Learn Before", "Related", "Learn After")  # "head": the card's own title and text


@dataclass(frozen=True)
class Item:
    key: str
    kind: str
    taught: str
    graded: tuple[str, ...]
    text: str  # exactly as in the card; an item over several lines has them joined with "\n"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"seed item {self.key}: kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def label(self) -> str:
        """The text on one line (the card's line breaks inside a question become spaces)."""
        return " ".join(self.text.split("\n"))


ITEMS: dict[str, Item] = {item.key: item for item in (
    Item('analysis_penalty', 'scenario', 'book/01_kl_penalty', ('01.penalty_when_equal', '01.penalty_meaning'),
         'Analysis of the Policy Regularization Penalty'),
    Item('analysis_penalty_question', 'question', 'book/01_kl_penalty',
         ('01.penalty_when_equal', '01.penalty_meaning'),
         'A penalty term is used during the training of a language model to prevent its behavior from '
         'drifting too far from a stable, reference version of the model. This penalty is calculated '
         'as the difference between the log-probability of a generated response under the current '
         'policy and the log-probability of the same response under the reference policy. If the '
         'current policy and the reference policy assign the exact same probability to a given '
         'response, what will the numerical value of the penalty be? Explain what this value signifies '
         "about the current policy's deviation from the reference policy for that specific response."),
    Item('ppo_objective_lm', 'concept', 'book/06_ppo_lm', (),
         'Overall PPO Objective Function for Language Models'),
    Item('response_a_vs_b', 'question', 'book/02_sequences', ('02.card000_penalties', '02.larger_penalty'),
         'During the policy optimization phase of training a large language model, the model is being '
         "rewarded for providing detailed explanations. The 'reference policy' is a version of the "
         'model that typically gives concise, direct answers. The current policy generates two '
         "possible responses to a user's query:\nResponse A: 'Yes.' Response B: 'Affirmative, the data "
         'you have presented aligns with the expected parameters, and therefore, the conclusion you '
         "have reached is indeed correct and validated.'\nAssuming the reference policy would have a "
         'very high probability of generating Response A and a near-zero probability of generating '
         'Response B, which response would incur a larger penalty term designed to prevent deviation '
         'from the reference policy, and why?'),
    Item('regularization_strength', 'scenario', 'book/03_objective',
         ('03.regularization_strength', '03.mediocre', '03.reward_only'),
         'Consequences of Policy Regularization Strength'),
    Item('case_customer_facing', 'scenario', 'book/03b_case_studies', ('03.case_customer_facing',),
         'Your team is running RLHF for a customer-facing LL...'),
    Item('case_internal_job', 'scenario', 'book/03b_case_studies', ('03.case_internal_job',),
         'You’re running an RLHF fine-tuning job for an inte...'),
    Item('case_review', 'scenario', 'book/03b_case_studies', ('03.case_review',),
         'You are reviewing an RLHF training run for an inte...'),
    Item('case_instability', 'scenario', 'book/03b_case_studies', ('03.case_instability',),
         'Diagnosing Instability in an RLHF + PPO Training Run'),
    Item('case_conflicting_signals', 'scenario', 'book/03b_case_studies', ('03.case_conflicting_signals',),
         'Interpreting Conflicting RLHF Signals: Reward Model Ranking vs. PPO Updates Under KL '
         'Regularization'),
    Item('case_product_constraints', 'scenario', 'book/03b_case_studies', ('03.case_product_constraints',),
         'Choosing and Justifying an RLHF Objective Under Competing Product Constraints'),
    Item('case_blueprint', 'scenario', 'book/03b_case_studies', ('03.case_blueprint',),
         'Designing an RLHF Training Blueprint for a Regulated Customer-Support LLM'),
    Item('case_reward_regresses', 'scenario', 'book/03b_case_studies', ('03.case_reward_regresses',),
         'Tuning an RLHF + PPO Update When Reward Improves but Behavior Regresses'),
    Item('case_post_deployment', 'scenario', 'book/03b_case_studies', ('03.case_post_deployment',),
         'Post-Deployment Drift After RLHF: Diagnosing Reward Model and PPO/KL Interactions'),
    Item('case_hacking_spike', 'scenario', 'book/03b_case_studies', ('03.case_hacking_spike',),
         'Root-Cause Analysis of a “Reward Hacking” Spike During RLHF with PPO'),
    Item('policy_objective', 'concept', 'book/03_objective', ('03.rlhf_loss',),
         'RLHF Policy Optimization Objective'),
    Item('policy_objective_text', 'concept', 'book/03_objective', ('03.rlhf_loss', '03.components'),
         'The goal of the policy training stage in Reinforcement Learning from Human Feedback (RLHF) '
         'is to find the optimal policy parameters that maximize expected reward without deviating too '
         'far from a reference policy. The training objective evaluates the quality of an output given '
         'an input using a reward model . The objective minimizes the negative reward (loss) and '
         'includes a penalty for policy divergence:\nHere, the penalty regularizes the current policy '
         'against the reference policy using a coefficient .'),
    Item('objective_function', 'concept', 'book/03_objective', ('03.components',),
         'Objective Function for Policy Learning in RLHF'),
    Item('ppo_in_rlhf', 'concept', 'book/06_ppo_lm', (),
         'Use of Proximal Policy Optimization (PPO) in RLHF'),
    Item('a2c', 'concept', 'book/05_policy_gradient', (),
         'Application of A2C in RLHF for LLM Alignment'),
    Item('reference_model', 'concept', 'book/03_objective', ('03.reference_role',),
         'Role and Definition of the Reference Model in RLHF'),
    Item('joint_policy_value', 'concept', 'book/06_ppo_lm', (),
         'Joint Optimization of Policy and Value Functions in RLHF'),
    Item('reference_policy', 'concept', 'book/03_objective', ('03.reference_role',),
         'Reference Policy in RLHF'),
    Item('loss_minimization', 'concept', 'book/03_objective', ('03.rlhf_loss',),
         'RLHF Policy Optimization as Loss Minimization'),
    Item('score_use_question', 'question', 'book/03_objective', ('03.score_use',),
         'A language model is being fine-tuned using an iterative feedback process. In each step, the '
         'model generates a response to a prompt. A separate, pre-trained scoring model then assigns a '
         'numerical score to this response based on its quality. What is the most direct and immediate '
         'use of this numerical score within a single step of this training loop?'),
    Item('loop_order_question', 'question', 'book/03_objective', ('03.loop_order',),
         'Arrange the following events into the correct chronological order as they would occur within '
         'a single iterative step of the policy learning phase for a language model.'),
    Item('case_training_failure', 'scenario', 'book/03b_case_studies', ('03.case_training_failure',),
         'Diagnosing a Training Failure in an Iterative Fine-Tuning Process'),
    Item('dpo', 'concept', 'book/08_dpo', (),
         'Direct Preference Optimization (DPO)'),
    Item('divergence_penalty_lm', 'concept', 'book/02_sequences', ('02.sequence_penalty', '09.kl_placement'),
         'Policy Divergence Penalty for Language Models'),
    Item('kl_penalty', 'concept', 'book/02_sequences', ('02.sequence_penalty', '09.kl_placement'),
         'KL-Divergence Penalty in RLHF Policy Optimization'),
    Item('drift_question', 'question', 'book/03_objective', ('03.drift_fix',),
         'An AI development team is fine-tuning a language model using a reinforcement learning '
         "process guided by a reward model. They observe that the model's outputs, while receiving "
         'high scores from the reward model, are becoming stylistically unnatural and deviating '
         'significantly from the helpful tone established during its initial supervised training. '
         'Which of the following adjustments to the training process is most specifically designed to '
         'counteract this behavioral drift?'),
    Item('reward_hacking', 'scenario', 'book/03b_case_studies', ('03.case_reward_hacking',),
         'Diagnosing and Mitigating Reward Hacking'),
    Item('omit_reference', 'scenario', 'book/03_objective', ('03.omit_reference',),
         'Consequences of Omitting a Reference Policy in RLHF'),
    Item('ppo_objective_llm', 'concept', 'book/06_ppo_lm', (),
         'PPO Objective for LLM Training'),
    Item('kl_objective_derivation', 'concept', 'book/04_optimal_policy', ('04.optimal_value',),
         'Derivation of the KL Divergence Objective for Policy Optimization'),
    Item('mediocre_question', 'question', 'book/03_objective', ('03.mediocre',),
         'During the policy optimization stage of training a large language model, an engineer '
         "observes that the model's outputs are coherent and safe, but they show very little "
         'improvement over the initial supervised fine-tuned version and consistently receive mediocre '
         'scores from the reward model. Which of the following is the most likely cause of this issue, '
         'based on the policy optimization objective function that balances maximizing rewards with a '
         'penalty for policy divergence?'),
    Item('tradeoff', 'scenario', 'book/03_objective', ('03.tradeoff',),
         'Analyzing the Trade-off in Policy Optimization'),
    Item('modified_objective', 'scenario', 'book/03_objective', ('03.modified_objective',),
         'Analyzing a Modified Policy Optimization Objective'),
    Item('stabilizing_penalty', 'concept', 'book/03_objective', ('03.penalty_effect',),
         'Stabilizing Policy Updates with a Divergence Penalty'),
    Item('stabilizing_penalty_text', 'concept', 'book/03_objective', ('03.penalty_effect',),
         'By incorporating a policy divergence penalty into the optimization objective, the learning '
         'process is stabilized. This penalty discourages the current policy from straying too far '
         'from a reference policy, thereby limiting excessively large updates that could disrupt '
         'training.'),
    Item('logprob_penalty', 'concept', 'book/01_kl_penalty', ('01.penalty',),
         'Log-Probability Difference as a Policy Divergence Penalty'),
    Item('j_new_question', 'question', 'book/03_objective', ('03.penalty_effect',),
         'An engineer is training a policy model and wants to prevent large, destabilizing updates '
         'between training iterations. They modify their original objective function,\nJ(θ), to a new '
         'objective function,J_new(θ) = J(θ) - β * D(θ, θ_old), whereθrepresents the current policy '
         'parameters,θ_oldrepresents the parameters from the previous iteration,Dis a function that '
         'measures the divergence between the two sets of parameters (a larger value means more '
         'divergence), andβis a positive coefficient. During optimization, the goal is to '
         'maximizeJ_new(θ). What is the primary effect of the- β * D(θ, θ_old)term on the training '
         'process?'),
    Item('stabilizing_rl', 'scenario', 'book/03_objective', ('03.unstable_fix', '03.case_instability'),
         'Stabilizing Reinforcement Learning Training'),
    Item('choosing_objective', 'scenario', 'book/03_objective', ('03.choose_objective',),
         'Choosing an Objective Function for Stable Policy Updates'),
    Item('trust_region_question', 'question', 'book/03_objective', ('03.trust_region_tf',),
         'When implementing a penalty-based trust region for policy optimization where the goal is to '
         'maximize the objective function, increasing the weight of the penalty term will expand the '
         'trusted area, allowing the policy to make larger updates.'),
    Item('unstable_question', 'question', 'book/03_objective', ('03.unstable_fix',),
         'An engineer is fine-tuning a language model and observes that the training process is highly '
         "unstable. The model's performance fluctuates wildly, and the training loss sometimes spikes "
         'dramatically, suggesting the policy updates are too aggressive. Which of the following '
         'modifications to the optimization objective is most specifically designed to counteract this '
         'problem by directly constraining the magnitude of policy changes at each step?'),
    Item('case_erratic', 'scenario', 'book/03b_case_studies', ('03.case_erratic',),
         'Stabilizing an Erratic Training Process'),
    Item('case_penalty_impact', 'scenario', 'book/03b_case_studies', ('03.case_penalty_impact',),
         'Analyzing the Impact of a Policy Divergence Penalty'),
    Item('kl_penalty_text', 'concept', 'book/02_sequences', ('02.sequence_penalty', '09.kl_placement'),
         'A penalty term is incorporated into the RLHF objective function to regularize the policy and '
         'prevent it from deviating excessively from a reference policy. This penalty is formulated as '
         'the difference between the log probabilities of a sequence under the current policy () and '
         'the reference policy (), summed over all tokens in the sequence. The formula is: .'),
    Item('reward_only_question', 'question', 'book/03_objective', ('03.reward_only',),
         "A team is fine-tuning a language model where the only goal is to adjust the model's "
         'parameters to maximize the average score from a fixed reward model. After many training '
         'iterations, the team observes that while the policy consistently achieves high reward '
         'scores, the generated text is becoming repetitive and stylistically unnatural. What is the '
         'most likely reason for this outcome, based on the optimization objective?'),
    Item('case_undesirable', 'scenario', 'book/03b_case_studies', ('03.case_undesirable',),
         'Diagnosing Undesirable Model Behavior'),
    Item('components_question', 'question', 'book/03_objective', ('03.components',),
         'Match each mathematical component from the policy learning objective function with its '
         'conceptual role in the training process.'),
    Item('optimal_policy_product', 'concept', 'book/04_optimal_policy', ('04.optimal_policy', '09.best_of_n'),
         'Optimal Policy as a Product of Reference Policy and Exponentiated Reward'),
    Item('optimal_policy_product_text', 'concept', 'book/04_optimal_policy',
         ('04.optimal_policy', '09.drgrpo_beta'),
         'In reinforcement learning, particularly for language model alignment, an optimal policy is '
         'defined to be proportional to the product of a reference policy and the exponential of a '
         'scaled reward function . The unnormalized probability for an output given an input is given '
         'by the expression: This formulation effectively re-weights the probabilities from the '
         'reference policy, increasing the likelihood of outputs that receive a higher reward. The '
         'parameter acts as a temperature, controlling the influence of the reward function on the '
         'final policy. The full policy is obtained by normalizing this expression over all possible '
         'outputs .'),
    Item('plackett_luce', 'concept', 'book/04_optimal_policy', ('04.plackett_luce',),
         'Plackett-Luce Selection Probability Formula'),
    Item('worth_function', 'concept', 'book/04_optimal_policy', ('04.plackett_luce',),
         'Worth Function in Plackett-Luce Model'),
    Item('reward_ratio_question', 'question', 'book/04_optimal_policy', ('04.ratio_3_vs_1',),
         "A language model's policy, which determines the probability of generating an output\nygiven "
         'an inputx, is structured to be proportional to the exponential of a reward scorer(x, y). For '
         'a specific input, two potential outputs have the following reward scores:- Output A: Reward '
         '= 3.0\n- Output B: Reward = 1.0\nBased on this formulation, how does the probability of '
         'generating Output A compare to the probability of generating Output B?'),
    Item('response_probabilities', 'scenario', 'book/04_optimal_policy', ('04.ratio_3_vs_1', '04.double_reward'),
         'Analyzing Language Model Response Probabilities'),
    Item('double_reward_question', 'question', 'book/04_optimal_policy', ('04.double_reward',),
         "A language model's policy is designed such that the probability of generating an output is "
         'proportional to the exponential of its reward score. If Output Y has a reward score that is '
         'exactly double the reward score of Output Z, it means the policy will assign exactly double '
         'the probability to Output Y compared to Output Z.'),
    Item('small_beta_question', 'question', 'book/04_optimal_policy', ('04.small_beta', '09.std_scaling'),
         'A team is refining a text-generation model. The final probability of a generated text '
         'sequence is proportional to the product of its probability from an initial base model and an '
         "exponentiated reward score. The reward's influence is controlled by a scaling parameter, β, "
         'in the exponent, where a smaller β gives the reward more weight. The team observes that when '
         "they significantly decrease the value of β, the model's outputs become more repetitive and "
         'sometimes nonsensical, even though they achieve very high scores from the reward model. '
         'Which of the following best explains this behavior?'),
    Item('alignment_issues', 'scenario', 'book/04_optimal_policy', ('04.diagnose',),
         'Diagnosing Language Model Alignment Issues'),
    Item('justifying_reference', 'scenario', 'book/04_optimal_policy',
         ('04.justify_reference', '03.reference_role'),
         'Justifying the Reference Policy'),
)}

CARDS: dict[str, dict[str, tuple[str, ...]]] = {
    '000_a108886843c38947.txt': {
        'head': ('analysis_penalty', 'analysis_penalty_question'),
        'Related': ('ppo_objective_lm', 'response_a_vs_b', 'regularization_strength', 'analysis_penalty',
            'case_customer_facing', 'case_internal_job', 'case_review',
            'case_instability', 'case_conflicting_signals', 'case_product_constraints',
            'case_blueprint', 'case_reward_regresses', 'case_post_deployment',
            'case_hacking_spike'),
    },
    '001_96fcfd9b41c7e45e.txt': {
        'head': ('policy_objective', 'policy_objective_text'),
        'Related': ('objective_function', 'ppo_in_rlhf', 'a2c', 'reference_model', 'joint_policy_value',
            'policy_objective', 'reference_policy', 'loss_minimization',
            'score_use_question', 'loop_order_question', 'case_training_failure', 'dpo',
            'policy_objective', 'divergence_penalty_lm', 'kl_penalty', 'drift_question',
            'reward_hacking', 'omit_reference'),
        'Learn After': ('ppo_objective_llm', 'kl_objective_derivation', 'mediocre_question', 'tradeoff',
            'modified_objective'),
    },
    '002_a2dd90b4b1a7a295.txt': {
        'head': ('stabilizing_penalty', 'stabilizing_penalty_text'),
        'Related': ('logprob_penalty', 'j_new_question', '+stabilizing_rl', 'choosing_objective',
            'stabilizing_penalty', 'trust_region_question'),
        'Learn After': ('unstable_question', 'case_erratic', 'case_penalty_impact'),
    },
    '003_60630c9877fcdf43.txt': {
        'head': ('kl_penalty', 'kl_penalty_text'),
        'Related': ('kl_penalty', 'reward_only_question', 'case_undesirable', 'components_question',
            'policy_objective', 'divergence_penalty_lm', 'kl_penalty', 'drift_question',
            'reward_hacking', 'omit_reference'),
        'Learn After': ('ppo_objective_lm', 'response_a_vs_b', 'regularization_strength', 'analysis_penalty',
            'case_customer_facing', 'case_internal_job', 'case_review',
            'case_instability', 'case_conflicting_signals', 'case_product_constraints',
            'case_blueprint', 'case_reward_regresses', 'case_post_deployment',
            'case_hacking_spike'),
    },
    '004_c9d6ed82b0dcb342.txt': {
        'head': ('optimal_policy_product', 'optimal_policy_product_text'),
        'Related': ('plackett_luce', 'optimal_policy_product', 'worth_function', 'reward_ratio_question',
            'response_probabilities', 'double_reward_question'),
        'Learn After': ('small_beta_question', 'alignment_issues', 'justifying_reference'),
    },
}


def parse_card(text: str) -> dict[str, str]:
    """The item-bearing sections of a card's text: ``{section: its lines joined with "\\n"}``.

    A card is a sequence of lines: its title and text, then two counters (the lines ``0`` and ``1``), then the
    ``Tags`` header and the tags, then sections, each a header line (``Related``, ``Learn Before``,
    ``Learn After``) followed by its items. A header directly before the title (cards 001, 002 and 004 begin with
    ``Learn Before``) heads an empty list. Blank lines are dropped; tags and counters are not items. The title and
    text become the section ``"head"``.
    """
    blocks: list[tuple[str, list[str]]] = []
    header, lines = "head", []
    for raw in text.splitlines():
        line = raw.strip()
        if line in HEADERS:
            blocks.append((header, lines))
            header, lines = line, []
        elif line:
            lines.append(line)
    blocks.append((header, lines))
    out: dict[str, str] = {}
    for i, (header, lines) in enumerate(blocks):
        if header == "Tags":
            continue
        if i + 1 < len(blocks) and blocks[i + 1][0] == "Tags":
            if lines[-2:] != ["0", "1"]:
                raise ValueError("a card's title and text end with the two counter lines 0 and 1 before its tags")
            header, lines = "head", lines[:-2]
        if not lines:
            continue
        if header in out:
            raise ValueError(f"the card has two {header!r} sections")
        out[header] = "\n".join(lines)
    return out


def card_sections(card: str) -> dict[str, str]:
    """The sections of ``card`` rebuilt from :data:`CARDS` and :data:`ITEMS` (compare with :func:`parse_card`)."""
    out = {}
    for section, keys in CARDS[card].items():
        text = ""
        for key in keys:
            if key.startswith("+"):
                text += ITEMS[key[1:]].text
            else:
                text += ("\n" if text else "") + ITEMS[key].text
        out[section] = text
    return out


def card_items(card: str) -> list[tuple[str, Item]]:
    """``(section, item)`` for every item of ``card``, in the card's order, repeats included."""
    return [(section, ITEMS[key.lstrip("+")]) for section, keys in CARDS[card].items() for key in keys]


def table_rows() -> list[dict]:
    """One row per distinct item of each card, for the appendix: card, section(s), kind, text, page, graded ids."""
    rows = []
    for card in CARDS:
        seen: dict[str, dict] = {}
        for section, item in card_items(card):
            if item.key in seen:
                if section not in seen[item.key]["sections"]:
                    seen[item.key]["sections"].append(section)
                continue
            seen[item.key] = {"card": card, "sections": [section], "key": item.key, "kind": item.kind,
                              "text": item.label, "taught": item.taught, "graded": list(item.graded)}
        rows += seen.values()
    return rows
