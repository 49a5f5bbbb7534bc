"""Near-duplicate dialogues: MinHash signatures of word 5-grams, grouped by LSH banding and confirmed by
the signatures' estimated Jaccard similarity. Every setting of the method is here, in one place: the
shingle length, the signature length, the bands and the threshold (`NEAR_DUPLICATE_JACCARD`). The audit's
shard scan signs each dialogue (`minhash`); the dataset pass groups them (`NearDuplicates`)."""
from __future__ import annotations

import numpy as np

from generation.answers import normalise_answer

# Two dialogues are near-duplicates when their word 5-gram sets overlap by at least this (estimated).
NEAR_DUPLICATE_JACCARD = 0.9
_SHINGLE = 5
_PERMUTATIONS = 64
SIGNATURE_VALUES = _PERMUTATIONS  # the length of a `minhash` signature
_BANDS = 16
_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20250721)
_A = _rng.integers(1, 1 << 32, _PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 32, _PERMUTATIONS, dtype=np.uint64)


def shingles(text: str) -> set[int]:
    import xxhash

    words = normalise_answer(text).split()
    grams = [" ".join(words[i: i + _SHINGLE]) for i in range(max(1, len(words) - _SHINGLE + 1))]
    return {xxhash.xxh32_intdigest(g.encode("utf-8")) for g in grams if g}


def minhash(text: str) -> np.ndarray:
    """A MinHash signature of the text's word 5-grams (64 values)."""
    values = np.fromiter(shingles(text), dtype=np.uint64)
    if not len(values):
        return np.full(_PERMUTATIONS, np.iinfo(np.uint64).max, dtype=np.uint64)
    hashed = (values[None, :] * _A[:, None] + _B[:, None]) % _MERSENNE
    return hashed.min(axis=1)


class NearDuplicates:
    """Groups of near-duplicate texts by MinHash with LSH banding (candidates share a band), confirmed
    by the signatures' estimated Jaccard similarity: the connected components of the graph whose edges
    join two signatures that share a band and match in at least `threshold` of their values.

    Memory is the signatures alone, 512 bytes a text in one growing array (an audit of a million
    dialogues holds no per-text Python object); the bands are grouped once, in `groups`, by sorting.
    Identical signatures are merged first and the bands compare distinct ones only: N copies of one
    text (a replicated benchmark, a source that repeats its boilerplate) cost N, not N² comparisons."""

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._signatures = np.empty((1024, _PERMUTATIONS), dtype=np.uint64)
        self.count = 0
        self.compared = 0  # signature pairs compared by the last `groups` (distinct signatures only)

    def add(self, signature: np.ndarray) -> int:
        self.add_many(np.asarray(signature)[None, :])
        return self.count - 1

    def add_many(self, signatures: np.ndarray) -> None:
        """`add` each row of a (texts, values) array, in order."""
        needed = self.count + len(signatures)
        if needed > len(self._signatures):
            grown = np.empty((max(needed, 2 * len(self._signatures)), _PERMUTATIONS), dtype=np.uint64)
            grown[: self.count] = self._signatures[: self.count]
            self._signatures = grown
        self._signatures[self.count: needed] = signatures
        self.count = needed

    def groups(self) -> list[list[int]]:
        """Groups of two or more near-duplicates (indices in `add` order), each sorted, in the order of
        their first index."""
        signatures = self._signatures[: self.count]
        if not self.count:
            return []
        # distinct signatures, numbered in the order of their first occurrence; each is read in place
        # (`rep[k]`: the text that first had the k-th distinct signature), never copied out
        first, inverse = _distinct_rows(signatures)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        rep = first[order]
        of_text = rank[inverse]  # text index -> its distinct signature
        parent = list(range(len(rep)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        self.compared = 0
        width = _PERMUTATIONS // _BANDS
        for band in range(_BANDS):
            keys = np.ascontiguousarray(signatures[rep, band * width:(band + 1) * width])
            keys = keys.view(np.dtype((np.void, width * 8))).ravel()
            by_key = np.argsort(keys, kind="stable")  # members of a bucket stay in first-met order
            sorted_keys = keys[by_key]
            bounds = np.concatenate(([0], np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1, [len(keys)]))
            for bucket in np.flatnonzero(np.diff(bounds) > 1).tolist():  # buckets of two or more
                members = by_key[bounds[bucket]:bounds[bucket + 1]]
                for k in range(1, len(members)):
                    similar = np.mean(signatures[rep[members[:k]]] == signatures[rep[members[k]]], axis=1) >= self.threshold
                    self.compared += k
                    for other in members[:k][similar].tolist():
                        a, b = root(int(members[k])), root(other)
                        if a != b:
                            parent[a] = b
        # texts grouped by the root of their signature, as arrays (no Python list per text)
        roots = np.fromiter((root(k) for k in range(len(rep))), dtype=np.int64, count=len(rep))[of_text]
        by_root = np.argsort(roots, kind="stable")  # each group's texts in ascending order
        sorted_roots = roots[by_root]
        bounds = np.concatenate(([0], np.flatnonzero(sorted_roots[1:] != sorted_roots[:-1]) + 1, [len(roots)]))
        groups = [by_root[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()) if b - a > 1]
        return [g.tolist() for g in sorted(groups, key=lambda g: int(g[0]))]


_DISTINCT_CHECK_ROWS = 16384


def _distinct_rows(signatures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct signature rows: the index of each one's first row, and each row's distinct number
    (as `np.unique(rows, return_index=True, return_inverse=True)[1:]`, numbered in another order), found
    by a 128-bit digest of each row. `np.unique` over the 512-byte rows themselves sorts a copy of the whole
    array (the audit's peak at 200k dialogues: 840 MB). Every row is then compared with the first row of
    its digest, so a digest collision cannot merge two signatures: it falls back to the rows themselves."""
    import xxhash

    rows = np.ascontiguousarray(signatures)
    flat = memoryview(rows).cast("B")
    size = rows.shape[1] * rows.itemsize
    digests = b"".join(xxhash.xxh3_128_digest(flat[i * size:(i + 1) * size]) for i in range(len(rows)))
    _, first, inverse = np.unique(np.frombuffer(digests, dtype="V16"), return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    for start in range(0, len(rows), _DISTINCT_CHECK_ROWS):
        stop = start + _DISTINCT_CHECK_ROWS
        if not np.array_equal(rows[start:stop], rows[first[inverse[start:stop]]]):
            _, first, inverse = np.unique(rows.view(np.dtype((np.void, size))).ravel(), return_index=True,
                                          return_inverse=True)
            return first, inverse.ravel()
    return first, inverse
