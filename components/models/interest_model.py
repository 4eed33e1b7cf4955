"""The interest model: a causal self-attention sequential recommender (SASRec family).

An item's representation is a learned ID embedding, a learned projection of its frozen text
embedding, or their sum (`mode`). Items the model never saw in training keep a zero ID part,
so they are represented by their text alone and can be ranked from the day they are added.
The same item representations score the whole catalogue (tied input/output embeddings).
With `repeat_bias`, one learned offset is added to the scores of items already in the shopper's
history: the data decides whether shoppers come back to an item (consumables) or never buy it
twice (most of a beauty catalogue), instead of the evaluation masking history by hand.
With `frequency_mix` > 0 each layer blends attention with a frequency filter of the sequence
(BSARec, Shin et al., AAAI'24): attention picks single items, the filter carries the slowly
changing drift of a shopper's taste that attention learns poorly from short histories.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from components.features.text_profile import recency_text_profile

Mode = Literal["id", "text", "id+text"]
MODES: tuple[str, ...] = ("id", "text", "id+text")


@dataclass(frozen=True)
class InterestModelConfig:
    n_items: int            # catalogue size; item_idx 1..n_items, 0 = padding
    max_len: int = 50
    hidden: int = 64
    n_layers: int = 2
    n_heads: int = 1
    dropout: float = 0.5
    mode: Mode = "id+text"
    text_dim: int = 0       # width of the frozen text embeddings (0 when mode == "id")
    adapter_hidden: int = 0  # width of the cold-start adapter (0 = none; training/cold_start.py fits it)
    text_profile_decay: float = 0.5  # with the adapter: recency decay of the history text profile
    id_dropout: float = 0.0 # training only: share of items shown by their text alone in a step
    repeat_bias: bool = False  # learn one score offset for items already in the history
    frequency_mix: float = 0.0  # share of each layer's token mixing done by the frequency filter
    frequency_bins: int = 3     # lowest frequency bins (of max_len) the filter passes whole

    def to_dict(self) -> dict:
        return asdict(self)


class InterestModel(nn.Module):
    def __init__(self, cfg: InterestModelConfig, text_embeddings: torch.Tensor | None = None,
                 known_items: torch.Tensor | None = None):
        super().__init__()
        if cfg.mode not in MODES:
            raise ValueError(f"model.mode must be one of {MODES}, got {cfg.mode!r}")
        self.cfg = cfg
        n = cfg.n_items + 1
        self.uses_id = cfg.mode in ("id", "id+text")
        self.uses_text = cfg.mode in ("text", "id+text")
        if self.uses_id:
            self.item_id = nn.Embedding(n, cfg.hidden, padding_idx=0)
            nn.init.normal_(self.item_id.weight, std=0.02)
        if self.uses_text:
            if text_embeddings is None or text_embeddings.shape != (n, cfg.text_dim):
                raise ValueError(f"mode {cfg.mode} needs text embeddings of shape ({n}, {cfg.text_dim})")
            self.register_buffer("text", text_embeddings.float().clone())
            self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, cfg.hidden), nn.GELU(),
                                           nn.Linear(cfg.hidden, cfg.hidden))
        if cfg.adapter_hidden:
            if cfg.mode != "id+text":
                raise ValueError("the cold-start adapter stands in for ID embeddings: it needs mode 'id+text'")
            self.cold_adapter = nn.Sequential(nn.Linear(cfg.text_dim, cfg.adapter_hidden), nn.GELU(),
                                              nn.Linear(cfg.adapter_hidden, cfg.hidden))
            # text match (history text profile . item text): a 64-wide shopper state cannot carry
            # all the text a history shows. Every item gets it with weight text_match, text-only
            # items with weight and offset text_only_match on top (their exposure, calibrated)
            self.text_match = nn.Parameter(torch.zeros(()))
            self.text_only_match = nn.Parameter(torch.zeros(2))
        known = torch.ones(n) if known_items is None else known_items.float().clone()
        known[0] = 0.0
        self.register_buffer("known", known)   # 1 = seen in training: its ID embedding is trusted
        if cfg.repeat_bias:
            self.repeat = nn.Parameter(torch.zeros(()))
        self.position = nn.Embedding(cfg.max_len, cfg.hidden)
        self.input_norm = nn.LayerNorm(cfg.hidden)
        self.dropout = FastDropout(cfg.dropout)
        self.encoder = nn.TransformerEncoder(SequenceLayer(cfg), cfg.n_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(cfg.hidden)

    def text_representation(self, text: torch.Tensor) -> torch.Tensor:
        """[N, hidden] for items (or shopper queries) known only by text: the text path, plus the
        cold-start adapter's estimate of the missing ID part when the model has one."""
        rep = self.text_proj(text)
        if self.cfg.adapter_hidden:
            rep = rep + self.cold_adapter(text)
        return rep

    def item_representations(self, id_keep: torch.Tensor | None = None) -> torch.Tensor:
        """[n_items + 1, hidden]; row 0 (padding) is zero. Items seen in training use their ID
        embedding (plus text); the others are represented from their text alone. id_keep [n + 1]
        (training) hides the ID part of some seen items too, so the text path learns to stand alone."""
        known = self.known if id_keep is None else self.known * id_keep
        if not self.uses_text:
            reps = self.item_id.weight * known.unsqueeze(-1)
        elif not self.uses_id:
            reps = self.text_proj(self.text)
        else:   # known * (ID + text path) + (1 - known) * text_representation, the text path computed once
            known = known.unsqueeze(-1)
            reps = self.text_proj(self.text) + known * self.item_id.weight
            if self.cfg.adapter_hidden:
                reps = reps + (1 - known) * self.cold_adapter(self.text)
        mask = torch.ones(reps.shape[0], 1, device=reps.device)
        mask[0] = 0.0
        return reps * mask

    def user_states(self, seqs: torch.Tensor, items: torch.Tensor | None = None,
                    last_only: bool = False) -> torch.Tensor:
        """seqs: [B, L] left-padded item_idx -> hidden state after each position [B, L, hidden];
        with last_only, after the last one alone [B, 1, hidden]: the last layer then mixes and
        transforms one query per sequence instead of L (the same state, a fraction of the work)."""
        items = self.item_representations() if items is None else items
        B, L = seqs.shape
        pad = (seqs != 0).unsqueeze(-1).to(items.dtype)                      # [B, L, 1]
        # right-aligned positions: the most recent item is always position max_len - 1, however
        # many all-padding columns a batch was trimmed by
        pos = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=seqs.device).unsqueeze(0).expand(B, L)
        x = items[seqs] * (self.cfg.hidden ** 0.5) + self.position(pos)    # [B, L, H]
        h = self.dropout(self.input_norm(x)) * pad
        mask = self._attention_mask(seqs)
        last = len(self.encoder.layers) - 1
        for i, layer in enumerate(self.encoder.layers):
            h = layer(h, mask, pad, last_only=last_only and i == last)
        return self.output_norm(h) * (pad[:, -1:] if last_only else pad)

    def _attention_mask(self, seqs: torch.Tensor) -> torch.Tensor:
        """[B * n_heads, L, L], True = blocked: no look-ahead and no attention to padding, so a
        sequence's states do not depend on how much padding its batch has. Every position may
        attend to itself, which keeps all-padding rows finite (they are zeroed afterwards)."""
        B, L = seqs.shape
        future = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seqs.device), diagonal=1)
        blocked = future.unsqueeze(0) | (seqs == 0).unsqueeze(1)                  # [B, L, L]
        blocked &= ~torch.eye(L, dtype=torch.bool, device=seqs.device)
        return blocked.repeat_interleave(self.cfg.n_heads, dim=0)

    def add_repeat_bias(self, logits: torch.Tensor, rows: torch.Tensor, seqs: torch.Tensor,
                         upto: torch.Tensor) -> torch.Tensor:
        """logits [R, n_items + 1] of R positions; position r is sequence rows[r] up to column
        upto[r]. Adds the learned repeat offset once to every item at or before that column."""
        if not self.cfg.repeat_bias:
            return logits
        cols = torch.arange(seqs.shape[1], device=seqs.device)
        seen = (cols.unsqueeze(0) <= upto.unsqueeze(1)) & (seqs[rows] != 0)     # [R, L]
        r, c = torch.nonzero(seen, as_tuple=True)
        flat = torch.unique(r * logits.shape[1] + seqs[rows][r, c])             # an item counts once
        # in place: the product the logits come from does not need them for its gradient
        return logits.index_put_((flat // logits.shape[1], flat % logits.shape[1]),
                                 self.repeat.expand(len(flat)), accumulate=True)

    def text_profile(self, seqs: torch.Tensor, upto: torch.Tensor | None = None) -> torch.Tensor:
        """[B, text_dim] unit-length, recency-weighted mean text embedding of each history up to
        column upto (default: the last)."""
        return recency_text_profile(self.text, seqs, self.cfg.text_profile_decay, upto)

    def add_text_match(self, logits: torch.Tensor, profile: torch.Tensor, columns: torch.Tensor,
                       text_t: torch.Tensor | None = None) -> torch.Tensor:
        """logits plus the cold-start text match: text_match x cos(profile, item text) for every
        item, and text_only_match (weight x cos + offset) on top for the text-only items `columns`.
        text_t: the item texts transposed and contiguous, if the caller keeps them (faster)."""
        if not self.cfg.adapter_hidden:
            return logits
        similarity = profile @ (self.text.T if text_t is None else text_t)
        logits = logits + self.text_match * similarity
        if len(columns) == 0:
            return logits
        return logits.index_add(1, columns, self.text_only_match[0] * similarity[:, columns] + self.text_only_match[1])

    def text_only_items(self) -> torch.Tensor:
        """item_idx of the catalogue items known by their text alone (unseen in training)."""
        return torch.nonzero(self.known[1:] == 0).squeeze(1) + 1

    def forward(self, seqs: torch.Tensor, targets: torch.Tensor, n_negatives: int = 0) -> torch.Tensor:
        """Mean cross-entropy of next-item prediction over all non-padding positions.

        Only items seen in training compete: an item unknown at training time (a cold item, or
        any product added later) must not be learnt as "never bought", or its text path would be
        trained to rank it low before anyone had the chance to buy it.

        targets: [B, L] next item per position (0 = no target). n_negatives = 0 is the full
        softmax over the catalogue; > 0 is a sampled softmax against that many shared uniform
        negatives, for catalogues too large for the full one.
        """
        id_keep = None
        if self.training and self.cfg.id_dropout > 0 and self.uses_id and self.uses_text:
            # DropoutNet-style: some seen items are shown by their text alone, as new ones will be
            id_keep = (torch.rand(self.known.shape, device=seqs.device) >= self.cfg.id_dropout).float()
        items = self.item_representations(id_keep)
        keep = targets != 0
        if keep[:, :-1].any():
            h, t = self.user_states(seqs, items)[keep], targets[keep]         # [M, H], [M]
            rows, upto = torch.nonzero(keep, as_tuple=True)
        else:                              # every target at the last position (train.every_prefix)
            h, t = self.user_states(seqs, items, last_only=True)[:, -1], targets[:, -1]
            rows = torch.arange(len(seqs), device=seqs.device)
            upto = torch.full_like(rows, seqs.shape[1] - 1)
        if n_negatives == 0:
            logits = self.add_repeat_bias(h @ items.T, rows, seqs, upto)    # [M, n_items + 1]
            logits = logits.masked_fill(self.known == 0, float("-inf"))      # padding, unseen items
            return F.cross_entropy(logits, t)
        if self.cfg.repeat_bias:
            raise ValueError("model.repeat_bias needs the full softmax (train.n_negatives: 0)")
        candidates = torch.nonzero(self.known).squeeze(1)
        neg = candidates[torch.randint(0, len(candidates), (n_negatives,), device=h.device)]
        pos_logit = (h * items[t]).sum(-1, keepdim=True)                     # [M, 1]
        neg_logit = h @ items[neg].T                                         # [M, K]
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == t.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(t))

    @torch.inference_mode()
    def score_last(self, seqs: torch.Tensor, items: torch.Tensor | None = None,
                   text_t: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the whole catalogue after each sequence's last position: [B, n_items + 1]."""
        items = self.item_representations() if items is None else items
        h = self.user_states(seqs, items, last_only=True)[:, -1]            # [B, H]
        rows = torch.arange(seqs.shape[0], device=seqs.device)
        scores = self.add_repeat_bias(h @ items.T, rows, seqs, torch.full_like(rows, seqs.shape[1] - 1))
        if self.cfg.adapter_hidden:
            scores = self.add_text_match(scores, self.text_profile(seqs), self.text_only_items(), text_t)
        scores[:, 0] = float("-inf")
        return scores

    @torch.inference_mode()
    def score_text_queries(self, query_text: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Catalogue scores for shoppers known only by a statement of interest: each query's text
        embedding [Q, text_dim] is read as a one-item history through the text path, and with the
        cold-start adapter its text is that history's text profile for the text match every item
        gets: without it a new product's own description ranked it no higher than an unrelated
        query did (79th and 62nd of 2,680 on the test sample's model; first with it). Not the new
        products' own match and offset: their exposure is calibrated for shoppers with a history,
        and on queries it filled the lists with new products (Beauty k = 0 NDCG@10 .0118 -> .0065)."""
        if not self.uses_text:
            raise ValueError("mode 'id' has no text path: text queries need mode 'text' or 'id+text'")
        items = self.item_representations() if items is None else items
        query_text = query_text.to(items.device)
        extended = torch.cat([items, self.text_representation(query_text)])
        seqs = torch.arange(items.shape[0], extended.shape[0], device=items.device).unsqueeze(1)
        h = self.user_states(seqs, extended, last_only=True)[:, -1]
        scores = h @ items.T
        if self.cfg.adapter_hidden:
            none = torch.empty(0, dtype=torch.long, device=scores.device)   # no new products' own term
            scores = self.add_text_match(scores, F.normalize(query_text, dim=-1), none)
        scores[:, 0] = float("-inf")
        return scores


class FastDropout(nn.Module):
    """Dropout whose mask comes from 16 random bits per element, four to each 64-bit draw of
    torch's generator: on CPU, nn.Dropout's one draw per element was 40% of the sequence
    encoder's time (short sequences, hidden 64). Keep probability exact to 1/65536."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be within [0, 1), got {p}")
        self.p, self.threshold = p, round(p * 65536) - 32768

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-2 ** 63, None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep * (1.0 / (1.0 - self.p))


class SequenceLayer(nn.TransformerEncoderLayer):
    """A pre-norm transformer layer whose token mixer is causal self-attention blended with
    (share cfg.frequency_mix) BSARec's frequency filter: the lowest frequency_bins of the
    sequence pass whole, the rest are scaled by a learned per-dimension beta squared. The filter
    sees every position, later ones too, so a model with it may only be trained on its last
    position (train.every_prefix)."""

    def __init__(self, cfg: InterestModelConfig):
        super().__init__(cfg.hidden, cfg.n_heads, dim_feedforward=cfg.hidden * 4, dropout=cfg.dropout,
                         activation="gelu", batch_first=True, norm_first=True)
        self.dropout, self.dropout1, self.dropout2 = (FastDropout(cfg.dropout) for _ in range(3))
        if not 0.0 <= cfg.frequency_mix <= 1.0:
            raise ValueError(f"model.frequency_mix must be within [0, 1], got {cfg.frequency_mix}")
        if not 1 <= cfg.frequency_bins <= cfg.max_len // 2 + 1:
            raise ValueError(f"model.frequency_bins must be within [1, max_len // 2 + 1 = {cfg.max_len // 2 + 1}], "
                             f"got {cfg.frequency_bins}")
        self.mix = cfg.frequency_mix
        if self.mix:
            self.sqrt_beta = nn.Parameter(torch.randn(1, 1, cfg.hidden))
            # the low-pass filter is a circular convolution over max_len: as a matrix (column j:
            # the filtered impulse at j), one small matmul instead of an FFT round trip
            keep = (torch.arange(cfg.max_len // 2 + 1) < cfg.frequency_bins).float().unsqueeze(1)
            impulses = torch.eye(cfg.max_len)
            self.register_buffer("low_pass", torch.fft.irfft(torch.fft.rfft(impulses, dim=0) * keep,
                                                             n=cfg.max_len, dim=0), persistent=False)
            self.filter_dropout = FastDropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pad: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, L, H]; mask: the attention mask; pad [B, L, 1], 0 at padding. last_only: the
        output at the last position alone [B, 1, H] (every position is still read)."""
        h = self.norm1(x)
        rows = slice(-1, None) if last_only else slice(None)
        query = h[:, rows]
        mixed = self.dropout1(self.self_attn(query, h, h, attn_mask=mask[:, rows], need_weights=False)[0])
        if self.mix:
            mixed = (1 - self.mix) * mixed + self.mix * self._frequency_block(h * pad, rows) * pad[:, rows]
        x = x[:, rows] + mixed
        return x + self._ff_block(self.norm2(x))

    def _frequency_block(self, h: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        """The filter's output at positions `rows`, over the full max_len whatever columns the
        batch was trimmed to: zeros appended at the end are the left padding shifted round, and a
        filter commutes with a circular shift, so the first L outputs are the trimmed sequence's
        (the matrix's top-left L x L block)."""
        L = h.shape[1]
        low = torch.matmul(self.low_pass[:L, :L][rows].to(h.dtype), h)
        return self.filter_dropout(low + self.sqrt_beta ** 2 * (h[:, rows] - low))


def extend_catalogue(model: InterestModel, new_text: torch.Tensor) -> InterestModel:
    """A copy of the model whose catalogue also holds new items, known by their text embeddings
    [m, text_dim]: item_idx n_items+1 .. n_items+m, no retraining. They are unknown to training,
    so they are represented through the text path (and the cold-start adapter, if trained)."""
    if not model.uses_text:
        raise ValueError("mode 'id' has no text path: it cannot represent items it was not trained on")
    cfg = InterestModelConfig(**{**model.cfg.to_dict(), "n_items": model.cfg.n_items + len(new_text)})
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    device = state["text"].device
    state["text"] = torch.cat([state["text"], new_text.float().to(device)])
    state["known"] = torch.cat([state["known"], torch.zeros(len(new_text), device=device)])
    if model.uses_id:
        w = state["item_id.weight"]
        state["item_id.weight"] = torch.cat([w, torch.zeros(len(new_text), w.shape[1], device=device)])
    extended = InterestModel(cfg, state["text"], state["known"]).to(device)
    extended.load_state_dict(state)
    return extended.eval()


def left_pad(histories: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """Last `length` items of each history, right-aligned, 0-padded on the left: [B, length]."""
    out = torch.zeros((len(histories), length), dtype=torch.long)
    for row, hist in enumerate(histories):
        tail = list(hist)[-length:]
        if tail:
            out[row, length - len(tail):] = torch.as_tensor(tail, dtype=torch.long)
    return out
