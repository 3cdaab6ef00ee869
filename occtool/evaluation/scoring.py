"""Scores between probes and gallery identities, with memory bounded whatever the sizes.

Gallery: G images with identity index `gallery_labels[g]` in [0, I). Scores are per *identity*:
- cosine: dot product with the identity template = re-normalised mean of its image embeddings;
- QAConv (`qaconv`, `qaconv_occ`): per gallery image, then the best (max) image per identity;
- fused: per-probe z-normalised cosine + per-probe z-normalised QAConv (each row of [P, I]
  standardised by its own mean and std over the gallery identities: label-free).

`identify(...)` walks the probes in chunks and keeps, per probe, only what the metrics need:
the rank of the true identity (pessimistic on ties), the genuine score, impostor scores (all of
them while P*I <= `max_impostors`, else a uniform random sample (with replacement) of
`max_impostors / P` per probe, flagged; float32, the precision scores are computed in), and the
top-k list for scores.csv. With a shortlist (`shortlist_k`), QAConv re-ranks only the cosine
top-k identities of each probe (plus the true identity and the sampled impostors, scored
separately so that verification is not biased by the hard shortlist); a true identity outside
the cosine shortlist gets rank k+1 ("not found in the top k").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from occtool.errors import OcctoolError
from occtool.progress import ProgressFn, report

NEG_INF = float("-inf")


def identity_templates(embeddings: torch.Tensor, labels, n_ids: int) -> torch.Tensor:
    """[G, D] normalised embeddings + [G] identity index -> [I, D] re-normalised mean per identity."""
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    sums = torch.zeros((n_ids, embeddings.shape[1]), dtype=torch.float32)
    sums.index_add_(0, lab, embeddings.float())
    return sums / torch.linalg.vector_norm(sums, dim=1, keepdim=True).clamp_min(1e-12)


def _gather_maps(maps, idx, device) -> torch.Tensor:
    """maps: torch tensor or numpy/memmap array [N, C, H, W]; idx: int array -> float32 tensor on device."""
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(maps, torch.Tensor):
        out = maps[torch.as_tensor(idx)]
    elif idx.size and np.all(np.diff(idx) == 1):  # a contiguous run: one slice read
        out = torch.from_numpy(np.ascontiguousarray(maps[idx[0] : idx[-1] + 1]))
    else:
        out = torch.from_numpy(np.ascontiguousarray(maps[idx]))
    return out.to(device=device, dtype=torch.float32, non_blocking=True)


def max_per_identity(scores: torch.Tensor, labels: torch.Tensor, n_ids: int) -> torch.Tensor:
    """[P, G] image scores -> [P, I] best image score per identity (-inf where none)."""
    out = torch.full((scores.shape[0], n_ids), NEG_INF, dtype=scores.dtype, device=scores.device)
    idx = labels.to(scores.device).view(1, -1).expand_as(scores)
    return out.scatter_reduce_(1, idx, scores, reduce="amax", include_self=True)


class QAConvScorer:
    """QAConv scores of probe maps against gallery images, identity = best image.

    matcher: `occtool.matching.QAConvMatcher` (trained or not). Maps are torch tensors or numpy
    arrays / memmaps `[N, C, H, W]`, read a chunk at a time (so a memory-mapped gallery never has
    to fit in RAM); `probe_rows` / `gallery_rows` pick the rows of those arrays that take part
    (default: all). Visibility maps (`qaconv_occ`) likewise, or None (`qaconv`).
    """

    def __init__(self, matcher, probe_maps, gallery_maps, gallery_labels, n_ids, *, device,
                 probe_vis=None, gallery_vis=None, probe_rows=None, gallery_rows=None,
                 gallery_chunk: int = 2048):
        self.matcher = matcher.to(device).eval()
        self.probe_maps = probe_maps
        self.gallery_maps = gallery_maps
        self.labels = torch.as_tensor(np.asarray(gallery_labels), dtype=torch.long)
        self.n_ids = n_ids
        self.device = torch.device(device)
        self.probe_vis = probe_vis
        self.gallery_vis = gallery_vis
        self.p_rows = np.arange(len(probe_maps)) if probe_rows is None else np.asarray(probe_rows, dtype=np.int64)
        self.g_rows = np.arange(len(gallery_maps)) if gallery_rows is None else np.asarray(gallery_rows, dtype=np.int64)
        if self.g_rows.size != self.labels.numel():
            raise OcctoolError(f"QAConvScorer: {self.g_rows.size} gallery rows but {self.labels.numel()} labels")
        self.gallery_chunk = gallery_chunk
        # image indices of each identity (for shortlist re-ranking)
        lab = self.labels.numpy()
        self._order = np.argsort(lab, kind="stable")
        self._starts = np.r_[0, np.cumsum(np.bincount(lab, minlength=n_ids))]

    def _score(self, pm, gm, pv, gv) -> torch.Tensor:
        return self.matcher.score(pm, gm, probe_vis=pv, gallery_vis=gv).float()

    def _probe(self, rows):
        pm = _gather_maps(self.probe_maps, rows, self.device)
        pv = None if self.probe_vis is None else _gather_maps(self.probe_vis, rows, self.device)
        return pm, pv

    def _gallery(self, rows):
        gm = _gather_maps(self.gallery_maps, rows, self.device)
        gv = None if self.gallery_vis is None else _gather_maps(self.gallery_vis, rows, self.device)
        return gm, gv

    @torch.inference_mode()
    def identity_scores(self, rows: slice) -> torch.Tensor:
        """[p, I] for the probes in `rows` against every gallery identity (gallery in chunks)."""
        pm, pv = self._probe(self.p_rows[rows])
        out = torch.full((pm.shape[0], self.n_ids), NEG_INF, device=self.device)
        g_total = self.g_rows.size
        for a in range(0, g_total, self.gallery_chunk):
            b = min(a + self.gallery_chunk, g_total)
            gm, gv = self._gallery(self.g_rows[a:b])
            s = self._score(pm, gm, pv, gv)
            out = torch.maximum(out, max_per_identity(s, self.labels[a:b], self.n_ids))
        return out.cpu()

    def images_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(gallery image indices, their identity) for the given identity indices."""
        parts = [self._order[self._starts[i] : self._starts[i + 1]] for i in ids]
        imgs = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return imgs, self.labels.numpy()[imgs]

    @torch.inference_mode()
    def scores_for(self, probe: int, ids: np.ndarray) -> np.ndarray:
        """QAConv identity scores of one probe against the given identities only -> [len(ids)]."""
        imgs, img_ids = self.images_of(ids)
        pm, pv = self._probe(self.p_rows[[probe]])
        gm, gv = self._gallery(self.g_rows[imgs])
        s = self._score(pm, gm, pv, gv)[0].cpu().numpy()
        best = {int(i): NEG_INF for i in ids}
        for sc, i in zip(s, img_ids):
            if sc > best[int(i)]:
                best[int(i)] = float(sc)
        return np.array([best[int(i)] for i in ids], dtype=np.float64)


class CosineScorer:
    """Cosine scores of probe embeddings against identity templates, on `device`."""

    def __init__(self, probe_emb: torch.Tensor, templates: torch.Tensor, *, device):
        self.device = torch.device(device)
        self.probe_emb = probe_emb
        self.templates = templates.to(self.device)

    @torch.inference_mode()
    def identity_scores(self, rows: slice) -> torch.Tensor:
        return (self.probe_emb[rows].to(self.device) @ self.templates.T).cpu()


def _znorm_rows(s: torch.Tensor) -> torch.Tensor:
    mu = s.mean(dim=1, keepdim=True)
    sd = s.std(dim=1, keepdim=True).clamp_min(1e-12)
    return (s - mu) / sd


class FusedScorer:
    """Per-probe z-normalised, weighted sum of several scorers' identity scores."""

    def __init__(self, scorers, weights=None):
        self.scorers = list(scorers)
        self.weights = [1.0] * len(self.scorers) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.scorers):
            raise OcctoolError(f"FusedScorer: {len(self.scorers)} scorers but {len(self.weights)} weights")

    def identity_scores(self, rows: slice) -> torch.Tensor:
        total = None
        for sc, w in zip(self.scorers, self.weights):
            z = w * _znorm_rows(sc.identity_scores(rows).double())
            total = z if total is None else total + z
        return total.float()


class StoredScorer:
    """Identity scores already computed ([P, I] tensor), served by rows."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix

    def identity_scores(self, rows: slice) -> torch.Tensor:
        return self.matrix[rows]


@dataclass
class IdentResult:
    """What the metrics and the report need from an identification run of one method."""

    ranks: np.ndarray  # [P_known] 1-based, pessimistic; shortlist: k+1 = outside the shortlist
    genuine: np.ndarray  # [P_known]
    impostor: np.ndarray  # all or a sample of the impostor scores (known and unknown probes)
    impostors_sampled: bool
    impostors_total: int  # how many impostor pairs exist (scored or not)
    top_ids: np.ndarray  # [P, K] identity indices, best first
    top_scores: np.ndarray  # [P, K]
    genuine_all: np.ndarray  # [P] genuine score per probe (nan for probes without gallery identity)
    rank_all: np.ndarray  # [P] rank (0 for probes without gallery identity)
    shortlist_k: int | None = None
    notes: list[str] = field(default_factory=list)


def _ident_result(true_ids, n_ids, ranks_all, gen_all, imps, top_ids, top_sc, **extra) -> IdentResult:
    """Assemble an IdentResult from per-probe arrays (metrics over probes with a gallery identity)."""
    known = true_ids >= 0
    return IdentResult(
        ranks=ranks_all[known],
        genuine=gen_all[known],
        impostor=np.concatenate(imps) if imps else np.zeros(0),
        impostors_total=int(known.sum()) * (n_ids - 1) + int((~known).sum()) * n_ids,
        top_ids=top_ids,
        top_scores=top_sc,
        genuine_all=gen_all,
        rank_all=ranks_all,
        **extra,
    )


def _impostor_budget(n_probes: int, n_ids: int, max_impostors: int) -> tuple[int, bool]:
    if n_probes * n_ids <= max_impostors:
        return n_ids, False
    return max(1, max_impostors // max(1, n_probes)), True


def _chunk_impostors(sn: np.ndarray, true_ids: np.ndarray, *, budget: int, sampled: bool, rng) -> list[np.ndarray]:
    """Impostor scores of a probe chunk sn [p, I]: every column but the true one (all columns for
    probes not in the gallery), or a uniform sample (with replacement) of `budget` per probe.
    Stored as float32, the precision the scores are computed in."""
    n_ids = sn.shape[1]
    if not sampled:
        mask = np.ones_like(sn, dtype=bool)
        known = np.nonzero(true_ids >= 0)[0]
        mask[known, true_ids[known]] = False
        return [sn[mask].astype(np.float32)]
    out = []
    for r, tr in enumerate(true_ids):
        if tr >= 0:
            cols = rng.integers(0, n_ids - 1, size=budget)
            cols[cols >= tr] += 1  # skip the true column
        else:
            cols = rng.integers(0, n_ids, size=budget)
        out.append(sn[r, cols].astype(np.float32))
    return out


def identify(
    scorer,
    true_ids: np.ndarray,
    n_ids: int,
    *,
    chunk: int = 256,
    top_k: int = 10,
    max_impostors: int = 50_000_000,
    seed: int = 0,
    progress: ProgressFn = None,
    keep_matrix: bool = False,
):
    """Full identification: every probe against every identity, in probe chunks.

    scorer.identity_scores(slice) -> [p, I]; true_ids [P] (-1: identity not in the gallery).
    Returns IdentResult (and the full [P, I] matrix as a second value when keep_matrix).
    """
    true_ids = np.asarray(true_ids, dtype=np.int64)
    P = true_ids.size
    rng = np.random.default_rng(seed)
    budget, sampled = _impostor_budget(P, n_ids, max_impostors)
    k = min(top_k, n_ids)
    ranks_all = np.zeros(P, dtype=np.int64)
    gen_all = np.full(P, np.nan)
    imps: list[np.ndarray] = []
    top_ids = np.zeros((P, k), dtype=np.int64)
    top_sc = np.zeros((P, k), dtype=np.float64)
    matrix = torch.empty((P, n_ids), dtype=torch.float32) if keep_matrix else None
    for a in range(0, P, chunk):
        b = min(a + chunk, P)
        s = scorer.identity_scores(slice(a, b)).float()
        if not torch.isfinite(s).all():
            raise OcctoolError("a scoring method produced non-finite scores")
        if matrix is not None:
            matrix[a:b] = s.float()
        t = torch.as_tensor(true_ids[a:b])
        known = t >= 0
        rows = torch.arange(b - a)
        sn = s.numpy()
        if known.any():
            kr = rows[known]
            g = s[kr, t[known]]
            ranks = (s[kr] >= g[:, None]).sum(dim=1)
            gen_all[a + kr.numpy()] = g.numpy()
            ranks_all[a + kr.numpy()] = ranks.numpy()
        imps.extend(_chunk_impostors(sn, true_ids[a:b], budget=budget, sampled=sampled, rng=rng))
        tv, ti = torch.topk(s, k, dim=1)
        top_ids[a:b] = ti.numpy()
        top_sc[a:b] = tv.numpy()
        report(progress, b, P)
    res = _ident_result(true_ids, n_ids, ranks_all, gen_all, imps, top_ids, top_sc, impostors_sampled=sampled)
    return (res, matrix) if keep_matrix else res


def _impostor_ids(rng, n_ids: int, true_id: int, count: int) -> list[int]:
    """A uniform sample of `count` identities other than the true one (without replacement)."""
    m = min(count, n_ids - (1 if true_id >= 0 else 0))
    pool = rng.choice(n_ids, size=min(n_ids, m + 1), replace=False)
    return [int(i) for i in pool if i != true_id][:m]


def _rerank(scorer, probe: int, cand: np.ndarray, true_id: int, imp_ids: list[int]):
    """One probe's per-image scores of its shortlist, its impostor sample and its true identity
    (each identity scored once) -> (shortlist scores [k], impostor scores, genuine score or None)."""
    extra = [true_id] if true_id >= 0 and true_id not in cand else []
    ids = np.unique(np.r_[cand, extra, imp_ids].astype(np.int64))
    lookup = dict(zip(ids.tolist(), scorer.scores_for(probe, ids).tolist()))
    cand_sc = np.array([lookup[int(i)] for i in cand])
    imp_sc = np.array([lookup[i] for i in imp_ids], dtype=np.float32)
    return cand_sc, imp_sc, (lookup[true_id] if true_id >= 0 else None)


def identify_shortlist(
    cosine: CosineScorer,
    qaconv: QAConvScorer,
    true_ids: np.ndarray,
    n_ids: int,
    *,
    shortlist_k: int,
    impostors_per_probe: int = 32,
    chunk: int = 256,
    seed: int = 0,
    progress: ProgressFn = None,
    reranker: str = "QAConv",
) -> IdentResult:
    """Cosine top-k per probe re-ranked by QAConv (or any per-image scorer of the same interface,
    named `reranker` in the notes; see module doc); memory O(chunk * I + k)."""
    true_ids = np.asarray(true_ids, dtype=np.int64)
    P = true_ids.size
    k = min(shortlist_k, n_ids)
    rng = np.random.default_rng(seed)
    ranks_all = np.zeros(P, dtype=np.int64)
    gen_all = np.full(P, np.nan)
    imps: list[np.ndarray] = []
    top_ids = np.zeros((P, k), dtype=np.int64)
    top_sc = np.zeros((P, k), dtype=np.float64)
    for a in range(0, P, chunk):
        b = min(a + chunk, P)
        cs = cosine.identity_scores(slice(a, b))
        _, short = torch.topk(cs, k, dim=1)
        short = short.numpy()
        for r in range(b - a):
            p = a + r
            t = int(true_ids[p])
            imp_ids = _impostor_ids(rng, n_ids, t, impostors_per_probe)  # independent of the shortlist: unbiased FAR
            cand_sc, imp_sc, g = _rerank(qaconv, p, short[r], t, imp_ids)
            order = np.argsort(-cand_sc, kind="stable")
            top_ids[p], top_sc[p] = short[r][order], cand_sc[order]
            if imp_ids:
                imps.append(imp_sc)
            if t >= 0:
                gen_all[p] = g
                # rank includes itself: 1-based, ties pessimistic; outside the shortlist: k + 1
                ranks_all[p] = int(np.sum(cand_sc >= g)) if t in short[r] else k + 1
        report(progress, b, P)
    return _ident_result(
        true_ids, n_ids, ranks_all, gen_all, imps, top_ids, top_sc, impostors_sampled=True, shortlist_k=k,
        notes=[
            f"{reranker} re-ranks the cosine top-{k} per probe; a true identity outside it counts as rank {k + 1}",
            f"verification from the genuine pair and {impostors_per_probe} uniformly sampled impostor identities per probe",
        ],
    )


# ----------------------------------------------------------------------------------- pairs mode
def cosine_pair_scores(emb_a: torch.Tensor, emb_b: torch.Tensor) -> np.ndarray:
    """Row-wise dot products of normalised embeddings [N, D] x [N, D] -> [N]."""
    return (emb_a.double() * emb_b.double()).sum(dim=1).numpy()


@torch.inference_mode()
def qaconv_pair_scores(matcher, maps, idx_a, idx_b, vis=None, *, device, chunk: int = 16,
                       progress: ProgressFn = None) -> np.ndarray:
    """QAConv score of each pair (maps[idx_a[i]], maps[idx_b[i]]) -> [N].

    maps [M, C, H, W] (tensor or array), vis [M, 1, H, W] or None; rows are gathered a chunk at a
    time. Each chunk is a chunk x chunk score block whose diagonal is kept (the head uses running
    statistics, per element, so the diagonal equals scoring each pair alone).
    """
    matcher = matcher.to(device).eval()
    idx_a = np.asarray(idx_a, dtype=np.int64)
    idx_b = np.asarray(idx_b, dtype=np.int64)
    n = idx_a.size
    out = np.zeros(n, dtype=np.float64)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        pa = _gather_maps(maps, idx_a[a:b], device)
        pb = _gather_maps(maps, idx_b[a:b], device)
        va = None if vis is None else _gather_maps(vis, idx_a[a:b], device)
        vb = None if vis is None else _gather_maps(vis, idx_b[a:b], device)
        s = matcher.score(pa, pb, probe_vis=va, gallery_vis=vb).float()
        out[a:b] = torch.diagonal(s).cpu().numpy()
        report(progress, b, n)
    return out


def znorm_global(scores: np.ndarray) -> np.ndarray:
    """(s - mean) / std over all the given scores (label-free), for pair-mode fusion."""
    s = np.asarray(scores, dtype=np.float64)
    return (s - s.mean()) / max(float(s.std()), 1e-12)

