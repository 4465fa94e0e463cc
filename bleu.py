"""BLEU between short texts and average-linkage clustering: the repetition penalty of R-Zero's Challenger reward.

Paper Sec. 3.2 (PAPER.md Sec. 2.5): the batch's questions are clustered by d_ij = 1 - BLEU(q_i, q_j), average linkage,
cut at tau = 0.5, and each question pays r_rep = |C_k| / B for its cluster C_k. The official code calls nltk's
sentence_bleu on every pair and sklearn's AgglomerativeClustering; this file computes the same numbers and the same
clusters without either:
- `bleu_matrix`: nltk's sentence_bleu (whitespace tokens, 4-grams, uniform weights, smoothing method1) of every
  pair at once; the clipped n-gram counts of all pairs are one matrix product;
- `average_linkage_clusters`: sklearn's clusters, by a nearest-neighbour chain in O(B^2).

numpy only, so the file can be copied into another project alone.
"""
from collections import Counter

import numpy as np


def _ngram_overlaps(hyps, refs, n):
    """(H, R) clipped n-gram matches: sum over n-grams g of min(count_i(g), count_j(g)), hypothesis i, reference j.

    min(a, b) = #{k >= 1 : a >= k and b >= k}, so with one 0/1 column per (n-gram, k) the whole table is X_h @ X_r.T.
    Columns that no pair of distinct sentences shares add nothing and are left out. refs=None compares hyps with
    themselves (the diagonal is then not meaningful).
    """
    def keys(tokens):
        counts = Counter(tuple(tokens[j:j + n]) for j in range(len(tokens) - n + 1))
        return [(g, k) for g, c in counts.items() for k in range(1, c + 1)]
    keys_h = [keys(t) for t in hyps]
    keys_r = keys_h if refs is None else [keys(t) for t in refs]
    if refs is None:
        shared = [key for key, f in Counter(key for ks in keys_h for key in ks).items() if f >= 2]
    else:
        in_refs = {key for ks in keys_r for key in ks}
        shared = [key for key in dict.fromkeys(key for ks in keys_h for key in ks) if key in in_refs]
    column = {key: i for i, key in enumerate(shared)}

    def cells(key_lists):  # the (row, column) of each 1 of the 0/1 matrix
        rc = [(i, column[key]) for i, ks in enumerate(key_lists) for key in ks if key in column]
        return np.array(rc, dtype=np.int64).reshape(-1, 2).T, len(key_lists)

    def block(cells, start, width):
        (r, c), rows = cells
        X = np.zeros((rows, width), dtype=np.float32)  # exact for counts < 2^24
        sel = (c >= start) & (c < start + width)
        X[r[sel], c[sel] - start] = 1.0
        return X
    cells_h = cells(keys_h)
    cells_r = cells_h if refs is None else cells(keys_r)
    out = np.zeros((len(keys_h), len(keys_r)))
    for start in range(0, len(column), 8192):  # column blocks bound the memory of the 0/1 matrices
        width = min(8192, len(column) - start)
        Xh = block(cells_h, start, width)
        out += Xh @ (Xh if refs is None else block(cells_r, start, width)).T
    return out


def bleu_matrix(questions, references=None, max_n=4, epsilon=0.1):
    """(H, R) float64, [i, j] = nltk's sentence_bleu([r_j.split()], q_i.split(), smoothing method1): every question
    against every reference, or, with references=None, (B, B) among the questions themselves with the diagonal left
    at 0 (never used).

    nltk's definition: modified n-gram precisions p_n = clipped matches / max(1, hypothesis n-grams), n = 1..4,
    uniform weights; zero matches of order n become epsilon / denominator (method1); BLEU = 0 outright when no
    unigram matches; brevity penalty exp(1 - r/c) when the hypothesis (length c) is not longer than the
    reference (length r), and 0 for an empty hypothesis.
    """
    hyps = [q.split() for q in questions]
    refs = None if references is None else [q.split() for q in references]
    c = np.array([len(t) for t in hyps], dtype=np.float64)[:, None]  # (H, 1)
    r = c.T if refs is None else np.array([len(t) for t in refs], dtype=np.float64)[None, :]  # (1, R)
    log_p, unigram_matches = np.zeros((c.shape[0], r.shape[1])), None
    for n in range(1, max_n + 1):
        matches = _ngram_overlaps(hyps, refs, n)
        denominator = np.maximum(c - n + 1, 1.0)  # the hypothesis' n-gram count, at least 1
        log_p += np.log(np.where(matches > 0, matches, epsilon) / denominator) / max_n
        if n == 1:
            unigram_matches = matches
    bp = np.where(c > r, 1.0, np.exp(1.0 - r / np.maximum(c, 1.0)))
    bleu = np.where((unigram_matches > 0) & (c > 0), bp * np.exp(log_p), 0.0)
    if refs is None:
        np.fill_diagonal(bleu, 0.0)
    return bleu


def mean_pairwise_bleu(questions):
    """The mean BLEU over ordered pairs of distinct questions (0 for fewer than two): 1 when all are one string."""
    n = len(questions)
    return float(bleu_matrix(questions).sum() / (n * (n - 1))) if n > 1 else 0.0


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
