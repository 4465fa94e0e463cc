"""R-Zero: a Challenger and a Solver co-evolve from one base LM with no data (arXiv 2508.05004).

This file holds the paper's own parts:
- the Challenger reward (paper Sec. 3.2; RZERO-SPEC Sec. 2.4-2.6): uncertainty 1 - 2|p_hat - 1/2| from the
  Solver's majority vote, minus a repetition penalty |C_k| / B from BLEU-distance clustering of the batch,
  zero for bad format;
- the Solver data set (paper Sec. 3.3; RZERO-SPEC Sec. 3): keep a question when |p_hat - 1/2| <= delta,
  labelled by the majority answer.
"""
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

import vote

# ----------------------------------------------------------------------------- Challenger reward (paper Sec. 3.2)


def uncertainty_reward(p_hat, official=False):
    """Paper Eq. (3): r_unc = 1 - 2|p_hat - 1/2|, in [0, 1]. official=True: min(p_hat, 1 - p_hat), in [0, 0.5]."""
    return min(p_hat, 1.0 - p_hat) if official else 1.0 - 2.0 * abs(p_hat - 0.5)


def _ngram_overlaps(token_lists, n):
    """(B, B) clipped n-gram matches: sum over n-grams g of min(count_i(g), count_j(g)), for i != j.

    min(a, b) = #{k >= 1 : a >= k and b >= k}, so with one 0/1 column per (n-gram, k) the whole table is X @ X.T.
    Columns that only one sentence has add nothing off the diagonal and are left out.
    """
    per_sentence = [Counter(tuple(t[j:j + n]) for j in range(len(t) - n + 1)) for t in token_lists]
    keys = [[(g, k) for g, c in counts.items() for k in range(1, c + 1)] for counts in per_sentence]
    df = Counter(key for ks in keys for key in ks)
    column = {key: i for i, key in enumerate(key for key, f in df.items() if f >= 2)}
    rows = [(i, column[key]) for i, ks in enumerate(keys) for key in ks if key in column]
    B, out = len(token_lists), torch.zeros(len(token_lists), len(token_lists), dtype=torch.float64)
    if not rows:
        return out.numpy()
    r, c = torch.tensor(rows).T
    for start in range(0, len(column), 8192):  # column blocks bound the memory of the 0/1 matrix
        sel = (c >= start) & (c < start + 8192)
        X = torch.zeros(B, min(8192, len(column) - start))  # (B, C) float32: exact for counts < 2^24
        X[r[sel], c[sel] - start] = 1.0
        out += (X @ X.T).double()
    return out.numpy()


def bleu_matrix(questions, max_n=4, epsilon=0.1):
    """(B, B) float64, [i, j] = nltk's sentence_bleu([q_j.split()], q_i.split(), smoothing method1), i != j.

    nltk's definition: modified n-gram precisions p_n = clipped matches / max(1, hypothesis n-grams), n = 1..4,
    uniform weights; zero matches of order n become epsilon / denominator (method1); BLEU = 0 outright when no
    unigram matches; brevity penalty exp(1 - r/c) when the hypothesis (length c) is not longer than the
    reference (length r), and 0 for an empty hypothesis. The diagonal is left at 0 (never used).
    """
    tokens = [q.split() for q in questions]
    lengths = np.array([len(t) for t in tokens], dtype=np.float64)
    log_p, unigram_matches = np.zeros((len(tokens), len(tokens))), None
    for n in range(1, max_n + 1):
        matches = _ngram_overlaps(tokens, n)
        denominator = np.maximum(lengths - n + 1, 1.0)[:, None]  # the hypothesis' n-gram count, at least 1
        log_p += np.log(np.where(matches > 0, matches, epsilon) / denominator) / max_n
        if n == 1:
            unigram_matches = matches
    c, r = lengths[:, None], lengths[None, :]
    bp = np.where(c > r, 1.0, np.exp(1.0 - r / np.maximum(c, 1.0)))
    bleu = np.where((unigram_matches > 0) & (c > 0), bp * np.exp(log_p), 0.0)
    np.fill_diagonal(bleu, 0.0)
    return bleu


def bleu_distance_matrix(questions):
    """Symmetric (B, B) d_ij = 1 - BLEU, diagonal 0. As the official code (caller_penalty.py), the value for a pair
    i < j is computed with q_i as hypothesis and q_j as reference, then mirrored into [j, i]."""
    d = np.triu(1.0 - bleu_matrix(questions), k=1)
    return d + d.T


def average_linkage_clusters(dist, threshold=0.5):
    """Cluster ids (B,) from average-linkage agglomerative clustering of a precomputed distance matrix, cut at
    `threshold`: two clusters end up together only through merges at linkage distance < threshold (strict), the
    clusters of sklearn's AgglomerativeClustering(distance_threshold=threshold, metric="precomputed",
    linkage="average"). Nearest-neighbour chain with Lance-Williams updates: O(B^2) time, not O(B^3).

    Average linkage never merges below an earlier merge (it is reducible), so the merges under the threshold are
    the same whatever order the chain finds them in, and the cut is a union of those merges.
    """
    B = len(dist)
    D = np.array(dist, dtype=np.float64)
    np.fill_diagonal(D, np.inf)
    size, alive = np.ones(B), np.ones(B, dtype=bool)
    parent = list(range(B))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    chain, active = [], B
    while active > 1:
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        a = chain[-1]
        b = int(np.argmin(D[a]))
        if len(chain) > 1 and D[a, chain[-2]] <= D[a, b]:
            b = chain[-2]  # prefer the chain's previous element on ties, so the chain always ends
        if len(chain) > 1 and b == chain[-2]:
            chain = chain[:-2]
            height = D[a, b]
            merged = (size[a] * D[a] + size[b] * D[b]) / (size[a] + size[b])  # Lance-Williams, average linkage
            D[b], D[:, b] = merged, merged
            D[b, b] = np.inf
            D[a], D[:, a] = np.inf, np.inf
            size[b] += size[a]
            alive[a] = False
            active -= 1
            if height < threshold:
                parent[find(a)] = find(b)
        else:
            chain.append(b)
    roots = [find(i) for i in range(B)]
    ids = {root: k for k, root in enumerate(dict.fromkeys(roots))}
    return np.array([ids[root] for root in roots])


def repetition_penalty(questions, threshold=0.5, lam=1.0):
    """Paper Eq. (4): r_rep(x_i) = lambda |C_k| / B, C_k the BLEU cluster of x_i. Returns (r_rep, cluster ids)."""
    clusters = average_linkage_clusters(bleu_distance_matrix(questions), threshold)
    sizes = np.bincount(clusters)
    return lam * sizes[clusters] / len(questions), clusters


@dataclass
class ChallengerReward:
    reward: float
    format_ok: bool  # a <question> block was found
    question: str | None
    p_hat: float
    label: str | None  # the Solver's majority answer: the question's pseudo-label
    r_unc: float
    r_rep: float
    cluster: int


def challenger_rewards(outputs, solver_answers, tau=0.5, lam=1.0, official=False):
    """Rewards of a batch of Challenger outputs (raw text), given the Solver's m answers to each one's question.

    solver_answers[i] is the list of m extracted answers (None where the Solver gave none); it is ignored where
    the output has no question. Paper (default): r = 0 for bad format, else max(0, r_unc - r_rep).
    official=True reproduces caller_penalty.py at HEAD: (min(p, 1-p) if the format is good else -1) - r_rep, no clamp.
    As in the official code, the batch clustering includes bad-format outputs as empty questions (B counts them).
    """
    questions = [vote.extract_question(o) for o in outputs]
    r_rep, clusters = repetition_penalty([q or "" for q in questions], tau, lam)
    results = []
    for q, answers, rep, cluster in zip(questions, solver_answers, r_rep, clusters):
        v = vote.majority_vote(answers) if q is not None else vote.Vote(None, 0.0, [], [])
        r_unc = uncertainty_reward(v.p_hat, official)
        if official:
            reward = (r_unc if q is not None else -1.0) - rep
        else:
            reward = max(0.0, r_unc - rep) if q is not None else 0.0
        results.append(ChallengerReward(float(reward), q is not None, q, v.p_hat, v.label, r_unc, float(rep),
                                        int(cluster)))
    return results

# ----------------------------------------------------------------------------- Solver data set (paper Sec. 3.3)


@dataclass
class SolverExample:
    question: str
    label: str  # the majority answer of the Solver that labelled it
    p_hat: float


def filter_for_solver(questions, votes, delta=0.25, drop_no_answer=True, drop_box=True, drop_text=True):
    """Keep (question, pseudo-label, p_hat) where |p_hat - 1/2| <= delta (paper Sec. 3.3, delta = 0.25).

    The official upload.py / evaluate.py also drop, each switchable here: questions with no majority answer
    (empty or "None"), questions that mention "box", and answers that contain "text". Returns the kept rows and
    a Counter of how many each rule dropped (rules are applied in that order; a row counts once).
    """
    kept, dropped = [], Counter()
    for q, v in zip(questions, votes):
        if q is None:
            dropped["no_question"] += 1
        elif drop_no_answer and (v.label is None or v.label.strip() in ("", "None")):
            dropped["no_answer"] += 1
        elif drop_box and "box" in q.lower():
            dropped["box_in_question"] += 1
        elif drop_text and "text" in v.label:
            dropped["text_in_answer"] += 1
        elif abs(v.p_hat - 0.5) > delta + 1e-9:  # tolerance: p_hat = k/m is a float
            dropped["outside_band"] += 1
        else:
            kept.append(SolverExample(q, v.label, v.p_hat))
    return kept, dropped


def main():
    print("rzero: the R-Zero loop is not built yet; this run only checked the environment.")


if __name__ == "__main__":
    main()
