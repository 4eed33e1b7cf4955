"""Shape and invariance checks of the interest model on tiny synthetic inputs."""
import numpy as np
import pytest
import torch

from components.core.config.loader import load_params
from components.models.interest_model import FastDropout, InterestModel, InterestModelConfig, SequenceLayer, left_pad
from components.models.interest_scorer import ModelScorer
from components.training.train import _autocast, _evaluated, _optimizer, _weight_average, fit, train_epoch
from tests.conftest import ROOT

N_ITEMS, TEXT_DIM = 40, 8


def _model(mode: str, **cfg) -> InterestModel:
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, TEXT_DIM), dim=-1)
    text[0] = 0
    config = InterestModelConfig(n_items=N_ITEMS, max_len=10, hidden=16, mode=mode,
                          text_dim=TEXT_DIM if mode != "id" else 0, **cfg)
    return InterestModel(config, text if mode != "id" else None).eval()


@pytest.mark.parametrize("mode,frequency_mix", [("id", 0.0), ("text", 0.0), ("id+text", 0.0), ("id+text", 0.7)])
def test_scores_do_not_depend_on_padding(mode, frequency_mix):
    model = _model(mode, frequency_mix=frequency_mix)
    short, long = left_pad([[3, 4, 5]], 4), left_pad([[3, 4, 5]], 10)
    torch.testing.assert_close(model.score_last(short), model.score_last(long), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frequency_mix", [0.0, 0.7])
def test_last_position_alone_is_the_full_passes_last_state(frequency_mix):
    model = _model("id+text", frequency_mix=frequency_mix, n_layers=2, repeat_bias=True)
    seqs = left_pad([[1, 2], [7, 8, 9], [4]], 6)
    full = model.user_states(seqs)
    torch.testing.assert_close(model.user_states(seqs, last_only=True), full[:, -1:], atol=1e-6, rtol=1e-5)
    targets = torch.zeros_like(seqs)
    targets[:, -1] = torch.tensor([3, 4, 5])
    both = targets.clone()
    both[:, -2] = torch.tensor([0, 9, 0])                  # a target before the last: the full pass
    loss_last, loss_both = model(seqs, targets), model(seqs, both)
    logits = model.add_repeat_bias(full[:, -1] @ model.item_representations().T, torch.arange(3), seqs,
                                   torch.full((3,), 5))
    expected = torch.nn.functional.cross_entropy(logits.masked_fill(model.known == 0, float("-inf")), targets[:, -1])
    torch.testing.assert_close(loss_last, expected, atol=1e-5, rtol=1e-5)
    assert not torch.isclose(loss_last, loss_both)


def test_history_changes_scores_and_padding_item_never_wins():
    model = _model("id+text")
    scores = model.score_last(left_pad([[1, 2], [7, 8, 9]], 10))
    assert scores.shape == (2, N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all()
    assert not torch.allclose(scores[0, 1:], scores[1, 1:])


def test_frequency_filter_passes_the_low_bins_of_the_left_padded_full_length_sequence():
    layer = SequenceLayer(InterestModelConfig(n_items=3, max_len=8, hidden=4, frequency_mix=1.0,
                                              frequency_bins=2)).eval()
    with torch.no_grad():
        layer.sqrt_beta.fill_(0.5)                         # high frequencies scaled by 0.25
    h = torch.randn(2, 5, 4)                               # a batch trimmed to 5 of its 8 columns
    spectrum = torch.fft.rfft(torch.cat([torch.zeros(2, 3, 4), h], dim=1), dim=1)
    spectrum[:, 2:] *= 0.25
    expected = torch.fft.irfft(spectrum, n=8, dim=1)[:, 3:]
    torch.testing.assert_close(layer._frequency_block(h), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_fast_dropout_drops_its_share_and_keeps_the_mean(p):
    dropout = FastDropout(p).train()
    torch.manual_seed(0)
    out = dropout(torch.ones(200_001))                      # an odd size: the last draw is cut
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / out.numel()) ** 0.5
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))
    x = torch.randn(3, 5)
    assert torch.equal(dropout.eval()(x), x)


def test_scorer_groups_histories_by_length_and_keeps_their_order():
    model = _model("id+text", frequency_mix=0.7)
    histories = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [4], [], [5, 6, 7], [8, 9], list(range(1, 30))]
    together = ModelScorer(model, batch_size=2).score(histories)
    alone = np.concatenate([ModelScorer(model).score([h]) for h in histories])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_unknown_items_keep_only_their_text_part():
    known = torch.ones(N_ITEMS + 1)
    known[5] = 0
    text_only = _model("text").item_representations()
    model = _model("id+text")
    model.known.copy_(known)
    reps = model.item_representations()
    torch.testing.assert_close(reps[5], model.text_proj(model.text)[5])
    assert reps[5].shape == text_only[5].shape and reps[0].abs().sum() == 0


@pytest.mark.parametrize("n_negatives", [0, 5])
def test_loss_is_finite_and_backpropagates(n_negatives):
    model = _model("id+text").train()
    seqs = left_pad([[1, 2, 3], [4, 5]], 10)
    targets = left_pad([[2, 3, 6], [5, 7]], 10)
    loss = model(seqs, targets, n_negatives)
    loss.backward()
    assert torch.isfinite(loss) and model.item_id.weight.grad.abs().sum() > 0


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="model.mode"):
        InterestModel(InterestModelConfig(n_items=3, mode="bag-of-words"))


def test_id_dropout_shows_seen_items_by_text_alone_only_in_training():
    model = _model("id+text", id_dropout=0.5)
    seqs, targets = left_pad([[1, 2, 3]], 10), left_pad([[2, 3, 4]], 10)
    model.train()
    torch.manual_seed(1)
    keep = (torch.rand(model.known.shape) >= 0.5).float()
    dropped = model.item_representations(keep)
    full = model.item_representations()
    hidden = (keep == 0) & (model.known > 0)
    torch.testing.assert_close(dropped[hidden], model.text_representation(model.text)[hidden])
    torch.testing.assert_close(dropped[~hidden], full[~hidden])
    assert torch.isfinite(model(seqs, targets))
    model.eval()
    torch.testing.assert_close(model.score_last(seqs), model.score_last(seqs))


def test_repeat_bias_moves_exactly_the_history_items():
    model = _model("id+text", repeat_bias=True)
    plain = _model("id+text")
    with torch.no_grad():
        model.repeat.fill_(-3.0)
    seqs = left_pad([[1, 2, 1], [7]], 10)
    diff = model.score_last(seqs)[:, 1:] - plain.score_last(seqs)[:, 1:]
    expected = torch.zeros_like(diff)
    expected[0, [0, 1]] = -3.0   # items 1 and 2 (item 1 twice in the history: still once)
    expected[1, 6] = -3.0
    torch.testing.assert_close(diff, expected)


@pytest.mark.parametrize("comes_back", [False, True])
def test_repeat_bias_learns_whether_shoppers_come_back(comes_back):
    model = _model("id", repeat_bias=True, dropout=0.0).train()
    g = torch.Generator().manual_seed(1)
    seqs = torch.stack([torch.randperm(N_ITEMS, generator=g)[:8] + 1 for _ in range(64)])
    inputs = seqs[:, :7]
    targets = inputs[:, :1].expand(-1, 7) if comes_back else seqs[:, 1:]   # first item again / a new one
    optim = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        loss = model(inputs, targets)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert (model.repeat.item() > 0.5) if comes_back else (model.repeat.item() < -0.5)


def test_text_match_weights_every_item_and_lifts_only_text_only_items():
    model = _model("id+text", adapter_hidden=8, text_profile_decay=0.5)
    model.known[5] = 0
    seqs = left_pad([[3, 4]], 10)
    plain = model.score_last(seqs)
    with torch.no_grad():
        model.text_match.fill_(3.0)
        model.text_only_match.copy_(torch.tensor([2.0, 1.0]))
    diff = model.score_last(seqs) - plain
    profile = torch.nn.functional.normalize(0.5 * model.text[3] + model.text[4], dim=-1)
    similarity = profile @ model.text.T
    assert diff[0, 5].item() == pytest.approx(5.0 * float(similarity[5]) + 1.0, abs=1e-5)
    others = torch.cat([torch.arange(1, 5), torch.arange(6, model.cfg.n_items + 1)])
    torch.testing.assert_close(diff[0, others], 3.0 * similarity[others])


@pytest.mark.parametrize("every_prefix", [False, True])
def test_training_rows_hold_every_next_item_once(every_prefix):
    import pandas as pd
    from components.training.train import training_tensors

    train = pd.DataFrame({"user": ["a"] * 4 + ["b"] * 2 + ["c"], "position": [0, 1, 2, 3, 0, 1, 0],
                          "item_idx": [5, 6, 7, 8, 9, 5, 4]})
    inputs, targets = training_tensors(train, max_len=2, every_prefix=every_prefix)
    if every_prefix:   # a row per prefix (at most max_len items), its target at the last position
        assert inputs.tolist() == [[0, 5], [5, 6], [6, 7], [0, 9]]
        assert targets.tolist() == [[0, 6], [0, 7], [0, 8], [0, 5]]
    else:              # a row per shopper (its last max_len + 1 items), a target at every position
        assert inputs.tolist() == [[6, 7], [0, 9]]
        assert targets.tolist() == [[7, 8], [0, 5]]


@pytest.mark.parametrize("every_prefix", [False, True])
def test_newest_rows_are_the_rows_that_end_with_each_shoppers_newest_item(every_prefix):
    import pandas as pd
    from components.training.train import newest_rows, training_tensors

    train = pd.DataFrame({"user": ["b", "a", "c", "a", "b", "a", "d", "d"], "position": [1, 2, 0, 0, 0, 1, 1, 0],
                          "item_idx": [5, 7, 4, 5, 9, 6, 3, 2]}).sample(frac=1, random_state=0)
    inputs, targets = training_tensors(train, max_len=2, every_prefix=every_prefix)
    rows = newest_rows(train, every_prefix)
    assert targets[rows, -1].tolist() == [7, 5, 3]           # a, b, d (c has no next item)
    assert inputs[rows, -1].tolist() == [6, 9, 2]
    assert len(rows) == 3 and (len(rows) < len(inputs)) == every_prefix


def test_training_decays_the_learning_rate_on_each_plateau_and_stops_by_patience():
    scripted = iter([0.10, 0.20, 0.15, 0.25, 0.20, 0.10, 0.30])     # valid NDCG@10 per epoch
    tp = load_params(ROOT / "params.yaml", environ={}).train.model_copy(
        update={"lr": 0.004, "patience": 2, "plateau_decay": 0.5, "epochs": 7, "max_minutes": 0, "batch_size": 2})
    model = _model("id+text", frequency_mix=0.7)
    inputs, targets = left_pad([[1, 2], [3, 4, 5]], 10), torch.zeros(2, 10, dtype=torch.long)
    targets[:, -1] = torch.tensor([3, 6])
    result = fit(model.cfg, tp, inputs, targets, model.text, model.known,
                 lambda _: {"ndcg@10": next(scripted)})
    assert [h["lr"] for h in result.history] == [0.004, 0.004, 0.004, 0.002, 0.002, 0.001]
    assert (result.best_epoch, result.stopped_because) == (4, "patience")


@pytest.mark.parametrize("decay,steps_per_epoch,expected_decay", [(0.6, 100, 0.6), (0.998, 2, 0.75)])
def test_weight_average_is_the_moving_average_of_the_weights_after_each_step(decay, steps_per_epoch, expected_decay):
    """(0.998 with 2 steps an epoch: the memory is capped at weight_average_max_epochs = 2 epochs.)"""
    tp = load_params(ROOT / "params.yaml", environ={}).train.model_copy(
        update={"weight_average": decay, "weight_average_max_epochs": 2.0, "lr": 0.01})
    model = _model("id+text", frequency_mix=0.7).train()
    inputs, targets = left_pad([[1, 2], [3, 4, 5], [6, 7], [8, 9, 10]], 10), torch.zeros(4, 10, dtype=torch.long)
    targets[:, -1] = torch.tensor([3, 6, 8, 11])
    device = torch.device("cpu")
    optim, average = _optimizer(model, tp.lr, tp, device), _weight_average(model, tp, steps_per_epoch)
    expected = None
    for step in range(4):
        train_epoch(model, optim, [torch.tensor([step])], inputs, targets, tp, device, _autocast(device), "test",
                    average=average)
        weights = [p.detach().clone() for p in model.parameters()]
        expected = weights if expected is None else [expected_decay * e + (1 - expected_decay) * w
                                                     for e, w in zip(expected, weights)]
    averaged = list(_evaluated(model, average).parameters())
    assert not torch.equal(averaged[0], next(model.parameters()))
    for e, a in zip(expected, averaged):
        torch.testing.assert_close(a, e)
    assert _evaluated(model, _weight_average(model, tp.model_copy(update={"weight_average": 0.0}), 1)) is model
